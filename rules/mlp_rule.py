r"""The MetaNCA MLP rule (Barot, ALIFE 2024): an MLP over mean neighbourhood signals."""

from __future__ import annotations

from typing import List, Optional

import torch
from neuralgraph.rules.base import check_hidden, edge_state, init_update_layer, register
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing

from neuralgraph.typing import RuleOutput

__all__ = ["MLPRule"]


@register("mlp")
class MLPRule(MessagePassing):
    r"""The MetaNCA local rule from `"Meta-Neural Cellular Automata"
    <https://meetbarot.com/alife_2024_poster.pdf>`_ (Barot, ALIFE 2024).

    .. math::
        v_e = \big[w_e,\ h_e,\ \overline{w}_{\mathcal{N}_f(e)},\
        \overline{h}_{\mathcal{N}_f(e)},\ \overline{w}_{\mathcal{N}_b(e)},\
        \overline{h}_{\mathcal{N}_b(e)}\ (,\ a_{\mathrm{src}(e)},\ a_{\mathrm{dst}(e)})\big]

        (\Delta w_e, \Delta h_e) = \mathrm{MLP}(v_e)

    where :math:`\overline{x}_{\mathcal{N}}` is the mean over the neighbourhood
    (zero when empty) and the optional :math:`a` are the source/target neurons'
    mean activations on a data batch (data-conditioned variant).  The last
    layer is zero-initialised, so a fresh rule is the identity update.

    Args:
        hidden_dim (int): hidden-state width :math:`H`. (default: ``16``)
        width (int, optional): MLP width. (default: ``64``)
        depth (int, optional): number of hidden MLP layers. (default: ``2``)
        data_conditioned (bool, optional): add source/target activations on a
            data batch ``x`` to the perception. (default: ``False``)
        update_scale (float, optional): scale of the output (``dw``, ``dh``).
            (default: ``1.0``)
        chunk_size (int, optional): edges processed at once. (default: ``16384``)
        zero_init (bool, optional): zero-initialise the last layer, so a fresh
            rule is the identity update.  ``False`` starts it small and random
            (std ``0.01``), which lets meta-training leave the all-zero-weights
            saddle where no gradient reaches hidden layers. (default: ``True``)

    Shapes:
        - **input:** graph with ``weight`` :math:`(|E|)`, ``hidden``
          :math:`(|E|, H)`; optional data ``x`` :math:`(B, *)`
        - **output:** ``dw`` :math:`(|E|)`, ``dh`` :math:`(|E|, H)`
    """

    def __init__(self, hidden_dim: int = 16, width: int = 64, depth: int = 2,
                 data_conditioned: bool = False, update_scale: float = 1.0,
                 chunk_size: int = 16384, zero_init: bool = True) -> None:
        super().__init__(aggr="mean", node_dim=0)
        self.hidden_dim = hidden_dim
        self.width = width
        self.depth = depth
        self.data_conditioned = data_conditioned
        self.update_scale = update_scale
        self.chunk_size = chunk_size
        self.zero_init = zero_init
        in_dim = 3 * (1 + hidden_dim) + (2 if data_conditioned else 0)
        layers: List[nn.Module] = []
        d = in_dim
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.GELU()]
            d = width
        self.out = nn.Linear(d, 1 + hidden_dim)
        self.mlp = nn.Sequential(*layers, self.out)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                m.reset_parameters()
        init_update_layer(self.out, self.zero_init)

    # MessagePassing vocabulary ------------------------------------------------------
    def message(self, edge_attr: Tensor) -> Tensor:
        return edge_attr

    def edge_update(self, state: Tensor, fwd_i: Tensor, bwd_j: Tensor,
                    act_i: Optional[Tensor], act_j: Optional[Tensor]) -> Tensor:
        # fwd_i: mean over edges leaving the target neuron; bwd_j: mean over edges entering the source
        parts = [state, fwd_i, bwd_j]
        if act_i is not None and act_j is not None:
            parts += [act_j.unsqueeze(-1), act_i.unsqueeze(-1)]
        return torch.cat(parts, dim=-1)

    def perceive(self, graph: object, x: Optional[Tensor] = None,
                 edges: Optional[slice] = None) -> Tensor:
        """The perception vectors ``[E, 3 (1 + H) (+ 2)]`` (of the edges in ``edges``)."""
        signals = self._node_signals(graph, x)
        return self._perceive_edges(graph, edges if edges is not None else slice(None), *signals)

    def _perceive_edges(self, graph: object, sl: slice, node_in: Tensor, node_out: Tensor,
                        act: Optional[Tensor]) -> Tensor:
        """Perception of the edges in ``sl`` from precomputed node signals."""
        n = graph.num_nodes  # type: ignore[attr-defined]
        return self.edge_updater(graph.edge_index[:, sl], state=edge_state(graph, sl),  # type: ignore
                                 fwd=node_out, bwd=node_in, act=act, size=(n, n))

    def _node_signals(self, graph: object, x: Optional[Tensor]) -> tuple:
        """Node means of in-edge and out-edge states ``[V, 1+H]`` and activations."""
        check_hidden(graph, self.hidden_dim, self.__class__.__name__)
        edge_index = graph.edge_index  # type: ignore[attr-defined]
        n = graph.num_nodes  # type: ignore[attr-defined]
        state = edge_state(graph)  # (E, 1+H)
        node_in = self.propagate(edge_index, edge_attr=state, size=(n, n))  # mean of in-edges
        node_out = self.propagate(edge_index.flip(0), edge_attr=state, size=(n, n))  # of out-edges
        act = None
        if self.data_conditioned:
            if x is None:
                raise ValueError("data_conditioned MLPRule needs a data batch x")
            from neuralgraph.functional import node_activations

            act = node_activations(graph, x)
        elif x is not None:
            raise ValueError("x given to a MLPRule built with data_conditioned=False")
        return node_in, node_out, act

    def forward(self, graph: object, x: Optional[Tensor] = None) -> RuleOutput:
        signals = self._node_signals(graph, x)
        weight = graph.weight  # type: ignore[attr-defined]
        num_edges = weight.numel()
        outs: List[Tensor] = []
        out = None if torch.is_grad_enabled() else weight.new_empty(num_edges, 1 + self.hidden_dim)
        # edges in cache-sized chunks: node signals are gathered per chunk
        for s0 in range(0, num_edges, self.chunk_size):
            sl = slice(s0, min(num_edges, s0 + self.chunk_size))
            y = self.mlp(self._perceive_edges(graph, sl, *signals))
            if out is None:
                outs.append(y)
            else:
                out[sl] = y
        if out is None:
            out = torch.cat(outs) if len(outs) > 1 else outs[0]
        out = out * self.update_scale
        return out[:, 0], out[:, 1:]

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.hidden_dim}, width={self.width}, "
                f"depth={self.depth}, data_conditioned={self.data_conditioned})")
