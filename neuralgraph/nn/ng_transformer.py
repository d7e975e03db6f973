r"""NG-T: a relational transformer over the neurons of a neural graph (Kofinas et al., 2024)."""

from __future__ import annotations

import math
from typing import Any, Sequence, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.utils import scatter, softmax

from neuralgraph.nn.features import GraphInputs, node_batch
from neuralgraph.nn.readout import GraphReadout, mlp

__all__ = ["RelationalAttention", "NGTransformer"]

_ATTN = ("linear", "softmax")


class RelationalAttention(nn.Module):
    r"""Multi-head attention of every neuron over its incident edges, with
    multiplicative node-edge interactions.

    For a neuron :math:`i`, an incident edge :math:`(j, i)` (in either
    direction; the direction is a learned offset of :math:`e_{ij}`) and head
    :math:`h`:

    .. math::
        q_i = W_q x_i, \quad
        k_{ij} = (W_k x_j) \odot (W_{ke} e_{ij}) + W_{kb} e_{ij}, \quad
        v_{ij} = (W_v x_j) \odot (W_{ve} e_{ij}) + W_{vb} e_{ij}

    ``attention="linear"``: :math:`\alpha_{ij} = \phi(q_i)^\top \phi(k_{ij})`,
    :math:`\phi = \mathrm{elu} + 1`, and
    :math:`o_i = \sum_j \alpha_{ij} v_{ij} / (\sum_j \alpha_{ij} + \epsilon)`.
    Because a query belongs to one neuron and a key to one edge, the scores are
    per-edge scalars and the two scatter sums over a neuron's edges cost
    :math:`O(|E| F)` time and memory (no :math:`F \times F` state per node is
    needed, unlike edge-to-edge linear attention in :mod:`neuralgraph.rules`).
    ``attention="softmax"``: :math:`\alpha = \mathrm{softmax}_j(q_i^\top k_{ij} / \sqrt{d})`
    (``torch_geometric.utils.softmax``), for small graphs.

    Args:
        channels (int): width ``F`` (a multiple of ``heads``).
        heads (int, optional): number of heads. (default: ``4``)
        attention (str, optional): ``"linear"`` or ``"softmax"``. (default: ``"linear"``)
        eps (float, optional): linear-attention normaliser offset. (default: ``1e-6``)

    Shapes:
        - **input:** ``x [|V|, F]``, ``edge_index [2, |E|]``, ``edge_attr [|E|, F]``
        - **output:** ``[|V|, F]``
    """

    def __init__(self, channels: int, heads: int = 4, attention: str = "linear", eps: float = 1e-6) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"RelationalAttention: channels={channels} is not a multiple of heads={heads}")
        if attention not in _ATTN:
            raise ValueError(f"RelationalAttention: attention must be one of {_ATTN}, got {attention!r}")
        self.channels = channels
        self.heads = heads
        self.attention = attention
        self.eps = eps
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(channels, 2 * channels)
        self.kv_edge = nn.Linear(channels, 4 * channels)
        self.out = nn.Linear(channels, channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in (self.q, self.kv, self.kv_edge, self.out):
            m.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        h, d = self.heads, self.channels // self.heads
        src, dst = edge_index
        q = self.q(x).view(-1, h, d)[dst]  # (E, h, d) query of the attending neuron
        k_n, v_n = self.kv(x)[src].chunk(2, -1)  # (E, F) each
        k_m, k_b, v_m, v_b = self.kv_edge(edge_attr).chunk(4, -1)
        k = (k_n * k_m + k_b).view(-1, h, d)
        v = (v_n * v_m + v_b).view(-1, h, d)
        num_nodes = x.size(0)
        if self.attention == "linear":
            alpha = (F.elu(q) + 1).mul(F.elu(k) + 1).sum(-1, keepdim=True)  # (E, h, 1)
            num = scatter(alpha * v, dst, 0, dim_size=num_nodes, reduce="sum")  # (V, h, d)
            den = scatter(alpha, dst, 0, dim_size=num_nodes, reduce="sum")  # (V, h, 1)
            o = num / (den + self.eps)
        else:
            score = (q * k).sum(-1) / math.sqrt(d)  # (E, h)
            alpha = softmax(score, dst, num_nodes=num_nodes).unsqueeze(-1)
            o = scatter(alpha * v, dst, 0, dim_size=num_nodes, reduce="sum")
        return self.out(o.reshape(num_nodes, self.channels))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.channels}, heads={self.heads}, attention={self.attention!r})"


class _NGTLayer(nn.Module):
    """Pre-norm attention + FFN on neurons, then a residual edge update."""

    def __init__(self, dim: int, heads: int, attention: str, update_edges: bool = True) -> None:
        super().__init__()
        self.attn = RelationalAttention(dim, heads, attention)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.edge_norm = nn.LayerNorm(dim)
        self.direction = nn.Embedding(2, dim)
        self.ffn = mlp([dim, 2 * dim, dim])
        # the last layer's edges are not read by the readout: no edge update there
        self.edge_mlp = mlp([3 * dim, dim, dim]) if update_edges else None

    def reset_parameters(self) -> None:
        for m in (self.attn, self.norm1, self.norm2, self.edge_norm):
            m.reset_parameters()
        nn.init.normal_(self.direction.weight, std=0.5)
        for seq in (self.ffn, self.edge_mlp or ()):
            for lin in seq:
                if isinstance(lin, nn.Linear):
                    lin.reset_parameters()

    def forward(self, x: Tensor, e: Tensor, edge_index: Tensor) -> tuple[Tensor, Tensor]:
        # attend over incoming (forward) and outgoing (backward) edges at once
        both = torch.cat([edge_index, edge_index.flip(0)], 1)  # (2, 2E)
        en = self.edge_norm(e)
        e_both = torch.cat([en + self.direction.weight[0], en + self.direction.weight[1]], 0)
        x = x + self.attn(self.norm1(x), both, e_both)
        x = x + self.ffn(self.norm2(x))
        if self.edge_mlp is None:
            return x, e
        hx = self.norm2(x)
        src, dst = edge_index
        e = e + self.edge_mlp(torch.cat([hx[src], hx[dst], en], -1))
        return x, e


class NGTransformer(nn.Module):
    r"""NG-T: a relational transformer encoder of networks given as neural graphs
    (`Kofinas et al., 2024 <https://arxiv.org/abs/2403.12143>`_).

    Neurons are tokens; each layer applies :class:`RelationalAttention` over
    every neuron's incident edges (node-edge multiplicative interactions),
    a feed-forward block, and a residual edge update
    :math:`e_{ij}' = e_{ij} + \mathrm{MLP}([x_i \| x_j \| e_{ij}])`.
    Linear attention (default) keeps memory :math:`O(|E| F)`; full softmax
    attention is available for small graphs.  The graph output is
    :class:`GraphReadout` over the final neuron features, invariant to
    permutations of hidden neurons.

    Args:
        hidden (int): width ``F``.
        num_layers (int, optional): transformer layers. (default: ``3``)
        out_channels (int, optional): outputs per graph. (default: ``1``)
        heads (int, optional): attention heads. (default: ``4``)
        attention (str, optional): ``"linear"`` or ``"softmax"``. (default: ``"linear"``)
        num_probes (int, optional): learned probe inputs (``0``: off). (default: ``0``)
        input_shape (sequence of int, optional): network input shape, for probes.
        weight_scale (float, optional): raw weights are divided by it. (default: ``1.0``)
        pools (sequence of str, optional): readout pools. (default: mean, max)
        **max_sizes: embedding table sizes, see :class:`~neuralgraph.nn.features.GraphInputs`.

    Shapes:
        - **input:** a :class:`~neuralgraph.NeuralGraph` or a ``Batch`` of ``B``
        - **output:** ``[B, out_channels]``
    """

    def __init__(self, hidden: int, num_layers: int = 3, out_channels: int = 1, heads: int = 4,
                 attention: str = "linear", num_probes: int = 0, input_shape: Sequence[int] | None = None,
                 weight_scale: float = 1.0, pools: Sequence[str] = ("mean", "max"), **max_sizes: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.num_layers = num_layers
        self.out_channels = out_channels
        self.heads = heads
        self.attention = attention
        self.num_probes = num_probes
        self.inputs = GraphInputs(hidden, num_probes, input_shape, weight_scale, **max_sizes)
        self.layers = nn.ModuleList(_NGTLayer(hidden, heads, attention, i < num_layers - 1)
                                    for i in range(num_layers))
        self.norm = nn.LayerNorm(hidden)
        self.readout = GraphReadout(hidden, out_channels, pools)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.inputs.reset_parameters()
        for layer in self.layers:
            cast(Any, layer).reset_parameters()
        self.norm.reset_parameters()
        self.readout.reset_parameters()

    def node_embeddings(self, graph: Any) -> tuple[Tensor, Tensor]:
        """Final neuron and edge features ``([|V|, F], [|E|, F])`` (equivariant)."""
        x, e = self.inputs(graph)
        for layer in self.layers:
            x, e = layer(x, e, graph.edge_index)
        return self.norm(x), e

    def forward(self, graph: Any) -> Tensor:
        x, _ = self.node_embeddings(graph)
        return self.readout(x, node_batch(graph), getattr(graph, "num_graphs", 1))

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.hidden}, num_layers={self.num_layers}, heads={self.heads}, "
                f"attention={self.attention!r}, num_probes={self.num_probes})")
