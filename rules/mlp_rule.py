r"""The MetaNCA MLP rule (Barot, ALIFE 2024): an MLP over mean neighbourhood signals."""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing

from neuralgraph.rules import fused
from neuralgraph.rules.base import (
    check_hidden,
    edge_state,
    init_update_layer,
    neighbour_weight,
    probe_batch,
    register,
)
from neuralgraph.rules.layout import Block, DenseBlock, block_layout
from neuralgraph.rules.linear_attention import chunk_workers, parallel_chunks
from neuralgraph.typing import RuleOutput

__all__ = ["MLPRule"]


@register("mlp")
class MLPRule(MessagePassing):
    r"""The MetaNCA local rule from `"Meta-Neural Cellular Automata"
    <https://meetbarot.com/alife_2024_poster.pdf>`_ (Barot, ALIFE 2024).

    .. math::
        v_e = \big[w_e,\ h_e,\ \overline{w}_{\mathcal{N}_f(e)},\
        \overline{h}_{\mathcal{N}_f(e)},\ \overline{w}_{\mathcal{N}_b(e)},\
        \overline{h}_{\mathcal{N}_b(e)}\ (,\ a_{\mathrm{src}(e)},\ a_{\mathrm{dst}(e)}\
        (,\ \rho_e))\big]

        (\Delta w_e, \Delta h_e) = \mathrm{MLP}(v_e)

    where :math:`\overline{x}_{\mathcal{N}}` is the mean over the neighbourhood
    (zero when empty; weighted by the graph's optional ``neighbour_weight``, see
    :func:`~neuralgraph.rules.base.neighbour_weight`) and the optional :math:`a` are the source/target neurons'
    mean activations on a data batch (data-conditioned variant), and the optional
    :math:`\rho_e` is the correlation over that batch between the edge's source
    and target neuron (:func:`neuralgraph.functional.edge_correlations`; a
    Hebbian signal).  The last layer is zero-initialised, so a fresh rule is the
    identity update.

    Args:
        hidden_dim (int): hidden-state width :math:`H`. (default: ``16``)
        width (int, optional): MLP width. (default: ``64``)
        depth (int, optional): number of hidden MLP layers. (default: ``2``)
        data_conditioned (bool, optional): add source/target activations on a
            data batch ``x`` to the perception. (default: ``False``)
        coactivation (str, optional): with ``data_conditioned``, also add each
            edge's source/target correlation on the batch.  ``"activity"``: the
            output neurons' activity is the network's output; ``"labels"``: it is
            the one-hot target ``y`` (a supervised but local signal on the last
            layer's edges).  ``None``: no correlation. (default: ``None``)
        update_scale (float, optional): scale of the output (``dw``, ``dh``).
            (default: ``1.0``)
        chunk_size (int, optional): edges processed at once. (default: ``16384``)
        workers (int, optional): without autograd on CPU, threads that each
            process whole chunks with one intra-op thread. ``None``: torch's
            thread count; ``1``: one chunk at a time. (default: ``None``)
        zero_init (bool, optional): zero-initialise the last layer, so a fresh
            rule is the identity update.  ``False`` starts it small and random
            (std ``0.01``), which lets meta-training leave the all-zero-weights
            saddle where no gradient reaches hidden layers. (default: ``True``)
        native (bool, optional): the no-grad float32 CPU forward of the
            non-data-conditioned rule runs the MLP in the fused C kernel
            (:func:`neuralgraph.rules.fused.mlp_forward`; same function to float
            rounding).  ``None``: when it builds here; ``True``: always (raises
            :class:`~neuralgraph.native.NativeUnavailable` if it cannot run);
            ``False``: never. (default: ``None``)

    Shapes:
        - **input:** graph with ``weight`` :math:`(|E|)`, ``hidden``
          :math:`(|E|, H)`; optional data ``x`` :math:`(B, *)`
        - **output:** ``dw`` :math:`(|E|)`, ``dh`` :math:`(|E|, H)`
    """

    def __init__(self, hidden_dim: int = 16, width: int = 64, depth: int = 2,
                 data_conditioned: bool = False, coactivation: Optional[str] = None,
                 update_scale: float = 1.0,
                 chunk_size: int = 16384, zero_init: bool = True,
                 workers: Optional[int] = None, native: Optional[bool] = None) -> None:
        super().__init__(aggr="mean", node_dim=0)
        self.hidden_dim = hidden_dim
        self.width = width
        self.depth = depth
        self.data_conditioned = data_conditioned
        if coactivation not in (None, "activity", "labels"):
            raise ValueError(f"MLPRule: coactivation must be None, 'activity' or 'labels', got {coactivation!r}")
        if coactivation is not None and not data_conditioned:
            raise ValueError("MLPRule: coactivation needs data_conditioned=True")
        self.coactivation = coactivation
        self.update_scale = update_scale
        self.chunk_size = chunk_size
        self.workers = workers
        self.native = native
        self.zero_init = zero_init
        in_dim = 3 * (1 + hidden_dim) + (2 if data_conditioned else 0) + (1 if coactivation else 0)
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
    def edge_update(self, state: Tensor, fwd_i: Tensor, bwd_j: Tensor,
                    act_i: Optional[Tensor], act_j: Optional[Tensor], corr: Optional[Tensor]) -> Tensor:
        # fwd_i: mean over edges leaving the target neuron; bwd_j: mean over edges entering the source
        parts = [state, fwd_i, bwd_j]
        if act_i is not None and act_j is not None:
            parts += [act_j.unsqueeze(-1), act_i.unsqueeze(-1)]
        if corr is not None:
            parts.append(corr.unsqueeze(-1))
        return torch.cat(parts, dim=-1)

    def perceive(self, graph: object, x: Optional[Tensor] = None,
                 edges: Optional[slice] = None, y: Optional[Tensor] = None) -> Tensor:
        """The perception vectors ``[E, 3 (1 + H) (+ 2 (+ 1))]`` (of the edges in ``edges``)."""
        signals = self._node_signals(graph, x, y)
        return self._perceive_edges(graph, edges if edges is not None else slice(None), *signals)

    def _perceive_edges(self, graph: object, sl: slice, node_in: Tensor, node_out: Tensor,
                        act: Optional[Tensor], corr: Optional[Tensor] = None) -> Tensor:
        """Perception of the edges in ``sl`` from precomputed node (and edge) signals."""
        n = graph.num_nodes  # type: ignore[attr-defined]
        return self.edge_updater(graph.edge_index[:, sl], state=edge_state(graph, sl),  # type: ignore
                                 fwd=node_out, bwd=node_in, act=act,
                                 corr=None if corr is None else corr[sl], size=(n, n))

    def _node_signals(self, graph: object, x: Optional[Tensor], y: Optional[Tensor] = None) -> tuple:
        """Node means of in-edge and out-edge states ``[V, 1+H]``, activations ``[V]`` and
        edge correlations ``[E]`` (``None`` where the rule takes none)."""
        check_hidden(graph, self.hidden_dim, self.__class__.__name__)
        # means of in-edge / out-edge states (a mean scatter over edge_index's targets / sources),
        # computed as dense block sums (tests check the two agree)
        nw = neighbour_weight(graph, "MLPRule")
        node_in, node_out = _node_means(graph, block_layout(graph)) if nw is None else _weighted_node_means(graph, nw)
        if y is not None and self.coactivation != "labels":
            raise ValueError("labels y given to a MLPRule without coactivation='labels'")
        act = corr = None
        if self.data_conditioned:
            from neuralgraph.functional import edge_correlations, node_activations

            x, weight, probe_y = probe_batch(graph, x, "MLPRule")  # probe_y: None when x is given
            y = probe_y if y is None else y
            act = node_activations(graph, x, weight)
            if self.coactivation is not None:
                if self.coactivation == "labels" and y is None:
                    raise ValueError("MLPRule(coactivation='labels') needs the batch's labels y "
                                     "(or a probe batch with labels: GraphFactory.set_data(x, y))")
                corr = edge_correlations(graph, x, weight, y if self.coactivation == "labels" else None)
        elif x is not None:
            raise ValueError("x given to a MLPRule built with data_conditioned=False")
        return node_in, node_out, act, corr

    def forward(self, graph: object, x: Optional[Tensor] = None, y: Optional[Tensor] = None) -> RuleOutput:
        signals = self._node_signals(graph, x, y)
        weight = graph.weight  # type: ignore[attr-defined]
        num_edges = weight.numel()
        # without autograd: the fused kernel where it runs (autograd always takes the PyTorch path)
        if not torch.is_grad_enabled() and self.native is not False and \
                fused.use_kernel(self, fused.mlp_can_run(self, graph)):
            return fused.mlp_forward(self, graph, signals[0], signals[1], fused.kernel_workers(self))
        # edges in cache-sized chunks: node signals are gathered per chunk
        parts = [slice(s0, min(num_edges, s0 + self.chunk_size))
                 for s0 in range(0, num_edges, self.chunk_size)]
        if torch.is_grad_enabled():
            outs: List[Tensor] = [self.mlp(self._perceive_edges(graph, sl, *signals)) for sl in parts]
            out = torch.cat(outs) if len(outs) > 1 else outs[0]
            out = out * self.update_scale
            return out[:, 0], out[:, 1:]
        # inference: outputs written in place; on CPU whole chunks spread over threads
        out = weight.new_empty(num_edges, 1 + self.hidden_dim)
        workers = chunk_workers(self.workers, weight, len(parts))

        def run(i: int, sl: slice) -> None:
            out[sl] = self.mlp(self._perceive_edges(graph, sl, *signals)).mul_(self.update_scale)

        parallel_chunks(run, parts, workers)
        return out[:, 0], out[:, 1:]

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.hidden_dim}, width={self.width}, "
                f"depth={self.depth}, data_conditioned={self.data_conditioned}"
                + (f", coactivation={self.coactivation!r})" if self.coactivation else ")"))


def _node_means(graph: object, blocks: List[Block]) -> Tuple[Tensor, Tensor]:
    """Means of the edge states ``[w, h]`` entering and leaving every node, ``[V, 1+H]`` each
    (0 for nodes without such edges): a mean scatter over edge targets / sources, computed
    per :class:`~neuralgraph.rules.layout.DenseBlock` as row and column sums (no scatter, no
    ``[E, 1+H]`` copy) and by ``index_add`` on scatter blocks."""
    w, h = graph.weight, graph.hidden  # type: ignore[attr-defined]
    n = graph.num_nodes  # type: ignore[attr-defined]
    d = 1 + h.size(1)
    s_in, s_out = w.new_zeros(n, d), w.new_zeros(n, d)
    c_in, c_out = w.new_zeros(n), w.new_zeros(n)
    grad = torch.is_grad_enabled()

    def add(acc: Tensor, ids: Tensor, val: Tensor) -> Tensor:
        return acc.index_add(0, ids, val) if grad else acc.index_add_(0, ids, val)

    for b in blocks:
        sl = slice(b.offset, b.offset + b.numel)
        if isinstance(b, DenseBlock):
            w3, h3 = w[sl].view(b.O, b.C, b.R), h[sl].view(b.O, b.C, b.R, d - 1)
            rows = torch.cat([w3.sum((1, 2)).unsqueeze(1), h3.sum((1, 2))], 1)  # (O, 1+H)
            cols = torch.cat([w3.sum((0, 2)).unsqueeze(1), h3.sum((0, 2))], 1)  # (C, 1+H)
            s_in, s_out = add(s_in, b.dst, rows), add(s_out, b.src, cols)
            c_in = add(c_in, b.dst, w.new_full((b.O,), float(b.C * b.R)))
            c_out = add(c_out, b.src, w.new_full((b.C,), float(b.O * b.R)))
        else:
            st = torch.cat([w[sl].unsqueeze(1), h[sl]], 1)
            s_in, s_out = add(s_in, b.dst, st), add(s_out, b.src, st)
            ones = w.new_ones(b.numel)
            c_in, c_out = add(c_in, b.dst, ones), add(c_out, b.src, ones)
    return s_in / c_in.clamp(min=1).unsqueeze(1), s_out / c_out.clamp(min=1).unsqueeze(1)


def _weighted_node_means(graph: object, nw: Tensor) -> Tuple[Tensor, Tensor]:
    """:func:`_node_means` weighted by ``neighbour_weight`` ``nw [E, 2]``: an edge counts ``nw[e, 1]``
    times in the mean over the edges entering its target and ``nw[e, 0]`` times in the mean over the
    edges leaving its source."""
    st = edge_state(graph)
    src, dst = graph.edge_index  # type: ignore[attr-defined]
    n = graph.num_nodes  # type: ignore[attr-defined]
    means = []
    for ids, wt in ((dst, nw[:, 1]), (src, nw[:, 0])):
        s = st.new_zeros(n, st.size(1)).index_add(0, ids, st * wt.unsqueeze(1))
        c = st.new_zeros(n).index_add(0, ids, wt)
        means.append(s / torch.where(c > 0, c, torch.ones_like(c)).unsqueeze(1))
    return means[0], means[1]
