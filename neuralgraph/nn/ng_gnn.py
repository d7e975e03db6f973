r"""NG-GNN: PNA-style message passing over neural graphs (Kofinas et al., 2024)."""

from __future__ import annotations

import math
from typing import Any, List, Sequence, cast

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import scatter

from neuralgraph.nn.features import GraphInputs, node_batch
from neuralgraph.nn.readout import GraphReadout, mlp

__all__ = ["PNAEdgeConv", "NGGNN", "log_degree_delta"]

_AGGRS = ("mean", "max", "min", "std")
_SCALERS = ("identity", "amplification", "attenuation")


class PNAEdgeConv(MessagePassing):
    r"""One direction of PNA message passing with edge features
    (`Corso et al., 2020 <https://arxiv.org/abs/2004.05718>`_).

    .. math::
        m_{ij} = \mathrm{MLP}([x_i \| x_j \| e_{ij}]), \qquad
        a_i = \bigoplus_{s \in S} \bigoplus_{\rho \in R} s(d_i)\,\rho_{j \to i}(m_{ij})

    with aggregators :math:`R \subseteq \{\mathrm{mean}, \max, \min, \mathrm{std}\}`
    and degree scalers :math:`s(d) \in \{1,\ \log(d+1)/\delta,\ \delta/\log(d+1)\}`.

    Args:
        channels (int): feature width ``F`` of nodes, edges and messages.
        aggregators (sequence of str, optional): (default: mean, max, min, std)
        scalers (sequence of str, optional): (default: identity, amplification,
            attenuation)
        delta (float, optional): :math:`\delta`, a typical ``log(d + 1)`` of the
            training graphs. (default: ``1.0``)

    Shapes:
        - **input:** ``x [|V|, F]``, ``edge_index [2, |E|]``, ``edge_attr [|E|, F]``
        - **output:** ``[|V|, |R| |S| F]``
    """

    def __init__(self, channels: int, aggregators: Sequence[str] = _AGGRS,
                 scalers: Sequence[str] = _SCALERS, delta: float = 1.0) -> None:
        super().__init__(aggr=None)
        bad = [a for a in aggregators if a not in _AGGRS] + [s for s in scalers if s not in _SCALERS]
        if bad:
            raise ValueError(f"PNAEdgeConv: unknown aggregators/scalers {bad}")
        self.channels = channels
        self.aggregators = tuple(aggregators)
        self.scalers = tuple(scalers)
        self.delta = delta
        self.msg = mlp([3 * channels, channels, channels])
        self.reset_parameters()

    @property
    def out_channels(self) -> int:
        return self.channels * len(self.aggregators) * len(self.scalers)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for m in self.msg:
            if isinstance(m, nn.Linear):
                m.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        return self.propagate(edge_index, x=x, edge_attr=edge_attr)

    def message(self, x_i: Tensor, x_j: Tensor, edge_attr: Tensor) -> Tensor:
        return self.msg(torch.cat([x_i, x_j, edge_attr], -1))  # (E, F)

    def aggregate(self, inputs: Tensor, index: Tensor, ptr: Tensor | None = None,
                  dim_size: int | None = None) -> Tensor:
        outs: List[Tensor] = []
        mean = scatter(inputs, index, 0, dim_size=dim_size, reduce="mean")
        for a in self.aggregators:
            if a == "mean":
                outs.append(mean)
            elif a == "std":
                sq = scatter(inputs * inputs, index, 0, dim_size=dim_size, reduce="mean")
                outs.append(torch.sqrt(torch.relu(sq - mean * mean) + 1e-5))
            else:
                outs.append(scatter(inputs, index, 0, dim_size=dim_size, reduce=a))
        out = torch.cat(outs, -1)  # (V, |R| F)
        deg = scatter(torch.ones_like(index, dtype=inputs.dtype), index, 0, dim_size=dim_size, reduce="sum")
        log_deg = torch.log(deg.clamp(min=1) + 1).unsqueeze(-1)  # (V, 1)
        scaled = []
        for s in self.scalers:
            if s == "identity":
                scaled.append(out)
            elif s == "amplification":
                scaled.append(out * (log_deg / self.delta))
            else:
                scaled.append(out * (self.delta / log_deg))
        return torch.cat(scaled, -1)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.channels}, aggregators={list(self.aggregators)}, "
                f"scalers={list(self.scalers)})")


class _NGGNNLayer(nn.Module):
    """Forward + backward PNA, a residual node update, then a residual edge update."""

    def __init__(self, dim: int, aggregators: Sequence[str], scalers: Sequence[str], delta: float,
                 update_edges: bool = True) -> None:
        super().__init__()
        self.fwd = PNAEdgeConv(dim, aggregators, scalers, delta)
        self.bwd = PNAEdgeConv(dim, aggregators, scalers, delta)
        self.node_norm = nn.LayerNorm(dim)
        self.edge_norm = nn.LayerNorm(dim) if update_edges else None
        self.node_mlp = mlp([dim + 2 * self.fwd.out_channels, dim, dim])
        # the last layer's edges are not read by the readout: no edge update there
        self.edge_mlp = mlp([3 * dim, dim, dim]) if update_edges else None

    def reset_parameters(self) -> None:
        for m in (self.fwd, self.bwd, self.node_norm, self.edge_norm):
            if m is not None:
                m.reset_parameters()
        for seq in (self.node_mlp, self.edge_mlp or ()):
            for lin in seq:
                if isinstance(lin, nn.Linear):
                    lin.reset_parameters()

    def forward(self, x: Tensor, e: Tensor, edge_index: Tensor) -> tuple[Tensor, Tensor]:
        h = self.node_norm(x)
        agg_f = self.fwd(h, edge_index, e)  # messages from sources (previous layer)
        agg_b = self.bwd(h, edge_index.flip(0), e)  # messages from targets (next layer)
        x = x + self.node_mlp(torch.cat([h, agg_f, agg_b], -1))
        if self.edge_mlp is None or self.edge_norm is None:
            return x, e
        h = self.node_norm(x)
        src, dst = edge_index
        e = e + self.edge_mlp(torch.cat([h[src], h[dst], self.edge_norm(e)], -1))
        return x, e


class NGGNN(nn.Module):
    r"""NG-GNN: a graph-level encoder of networks given as neural graphs
    (`Kofinas et al., 2024 <https://arxiv.org/abs/2403.12143>`_).

    Each layer runs PNA message passing forward (from a neuron's inputs) and
    backward (from its outputs), updates nodes residually and then updates
    every edge from its two incident neurons and its previous state:

    .. math::
        x_i' = x_i + \mathrm{MLP}\bigl([x_i \| a^{\to}_i \| a^{\leftarrow}_i]\bigr),
        \qquad e_{ij}' = e_{ij} + \mathrm{MLP}([x_i' \| x_j' \| e_{ij}])

    The graph output is :class:`GraphReadout` over the final node features.
    Inputs come straight from :func:`~neuralgraph.to_neural_graph` (see
    :mod:`neuralgraph.nn.features`); the output is invariant to permutations of
    hidden neurons.

    Args:
        hidden (int): width ``F``.
        num_layers (int, optional): message-passing layers. (default: ``3``)
        out_channels (int, optional): outputs per graph. (default: ``1``)
        aggregators (sequence of str, optional): PNA aggregators.
            (default: mean, max, min, std)
        scalers (sequence of str, optional): PNA degree scalers.
            (default: identity, amplification, attenuation)
        delta (float, optional): PNA degree normaliser. (default: ``2.0``)
        num_probes (int, optional): learned probe inputs (``0``: off). (default: ``0``)
        input_shape (sequence of int, optional): network input shape, for probes.
        weight_scale (float, optional): raw weights are divided by it. (default: ``1.0``)
        pools (sequence of str, optional): readout pools. (default: mean, max)
        **max_sizes: embedding table sizes, see :class:`GraphInputs`.

    Shapes:
        - **input:** a :class:`~neuralgraph.NeuralGraph` or a ``Batch`` of ``B``
        - **output:** ``[B, out_channels]``
    """

    def __init__(self, hidden: int, num_layers: int = 3, out_channels: int = 1,
                 aggregators: Sequence[str] = _AGGRS, scalers: Sequence[str] = _SCALERS,
                 delta: float = 2.0, num_probes: int = 0, input_shape: Sequence[int] | None = None,
                 weight_scale: float = 1.0, pools: Sequence[str] = ("mean", "max"), **max_sizes: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.num_layers = num_layers
        self.out_channels = out_channels
        self.num_probes = num_probes
        self.delta = delta
        self.inputs = GraphInputs(hidden, num_probes, input_shape, weight_scale, **max_sizes)
        self.layers = nn.ModuleList(_NGGNNLayer(hidden, aggregators, scalers, delta, i < num_layers - 1)
                                    for i in range(num_layers))
        self.readout = GraphReadout(hidden, out_channels, pools)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.inputs.reset_parameters()
        for layer in self.layers:
            cast(Any, layer).reset_parameters()
        self.readout.reset_parameters()

    def node_embeddings(self, graph: Any) -> tuple[Tensor, Tensor]:
        """Final node and edge features ``([|V|, F], [|E|, F])`` (equivariant)."""
        x, e = self.inputs(graph)
        for layer in self.layers:
            x, e = layer(x, e, graph.edge_index)
        return x, e

    def forward(self, graph: Any) -> Tensor:
        x, _ = self.node_embeddings(graph)
        return self.readout(x, node_batch(graph), getattr(graph, "num_graphs", 1))

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.hidden}, num_layers={self.num_layers}, "
                f"out_channels={self.out_channels}, num_probes={self.num_probes})")


def log_degree_delta(graphs: Sequence[Any]) -> float:
    """Mean ``log(d + 1)`` of in-degrees over ``graphs`` (PNA's :math:`\\delta`)."""
    tot, n = 0.0, 0
    for g in graphs:
        deg = torch.bincount(g.edge_index[1], minlength=g.num_nodes).clamp(min=1).double()
        tot += float(torch.log(deg + 1).sum())
        n += g.num_nodes
    return tot / max(n, 1) if n else math.log(2)
