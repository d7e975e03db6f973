r"""The Weight Transformer rule (Barot, "Self-Organized CNNs using MetaNCA with Attention")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint
from torch_geometric.nn import MessagePassing

from neuralgraph.positional import POSITION_AXES
from neuralgraph.rules import fused
from neuralgraph.rules.base import (
    check_hidden,
    edge_state,
    init_update_layer,
    neighbour_weight,
    probe_batch,
    register,
    tall_linear,
)
from neuralgraph.rules.layout import DenseBlock, block_layout
from neuralgraph.rules.linear_attention import (
    LOG2E,
    Chunk,
    NodeStates,
    accumulate,
    cached_block_tables,
    chunk_workers,
    chunks,
    contract,
    merge_states,
    parallel_chunks,
    phi,
    phi_log2,
    rope_angles,
    rope_apply,
    rope_factors,
)
from neuralgraph.typing import RuleOutput

__all__ = ["WeightTransformer"]

#: ``min_dense`` cap of the autograd path (see :func:`~neuralgraph.rules.layout.block_layout`).
MIN_DENSE_GRAD = 1024



@register("weight_transformer")
class WeightTransformer(MessagePassing):
    r"""The Weight Transformer local rule: linear attention over forward and
    backward neighbourhoods with rotary position embeddings, from
    `"Self-Organized CNNs using MetaNCA with Attention"` (Barot, Mythos Scientific).

    For an edge :math:`e` with state :math:`x_e = [w_e, h_e]`:

    .. math::
        (k^f, v^f, k^b, v^b)_e = W_{kv} x_e, \qquad (q^f, q^b, u)_e = W_{qu} x_e

        a^f_e = \frac{\sum_{g \in \mathcal{N}_f(e)} (R_e \phi(q^f_e))^\top
                (R_g \phi(k^f_g))\, v^f_g}
               {\sum_{g \in \mathcal{N}_f(e)} \phi(q^f_e)^\top \phi(k^f_g) + \epsilon}
        \quad\text{(per head; } a^b_e \text{ likewise over } \mathcal{N}_b(e))

        z_e = u_e + W_o [a^f_e, a^b_e] \;(+\, W_d [\bar x_a, \bar x_b]), \qquad
        z_e \leftarrow z_e + \mathrm{FF}(\mathrm{LN}(z_e))

        (\Delta w_e, \Delta h_e) = s \tanh\big(\mathrm{MLP}(\mathrm{LN}(z_e))\big)

    with :math:`\phi = \mathrm{elu} + 1` and :math:`R_e` the RoPE rotation of
    head :math:`i` by edge :math:`e`'s position along axis ``head_axes[i]``
    (layer, backward neuron, forward neuron, kernel row, kernel column).  The
    neighbourhood sums are node-level states (see
    :mod:`neuralgraph.rules.linear_attention`), computed block-wise as batched
    matrix products and in chunks of edges, so memory stays ``O(|E|)``.  The
    head's last layer is zero-initialised: a fresh rule is the identity update.
    A graph with a ``neighbour_weight`` ``[E, 2]`` (see
    :func:`~neuralgraph.rules.base.neighbour_weight`) weighs every neighbour
    :math:`g`'s :math:`\phi(k_g)` in both sums by its column for that
    neighbourhood.

    A *data-conditioned* rule (``data_conditioned=True``) also reads the mean
    activations :math:`\bar x_a, \bar x_b` of edge :math:`a \to b`'s source and
    target neuron on a data batch (:func:`~neuralgraph.functional.node_activations`:
    over the batch and, for conv channels, over space), projected by :math:`W_d`
    into the residual stream.  :math:`W_d` starts at zero, so such a rule first
    computes the same update as the rule without it, and a trained rule without
    data conditioning loads into it unchanged (``train.init_rule``).

    Args:
        hidden_dim (int): hidden-state width :math:`H`. (default: ``16``)
        heads (int, optional): attention heads. (default: ``5``, one per axis)
        head_dim (int, optional): width of each head (even). (default: ``4``)
        ff_dim (int, optional): feed-forward width. (default: ``32``)
        head_width (int, optional): output MLP width. (default: ``32``)
        rope (bool or sequence of bool, optional): RoPE on/off, globally or per
            axis of :data:`~neuralgraph.positional.POSITION_AXES`. (default: ``True``)
        head_axes (sequence of int, optional): the axis each head rotates along.
            (default: head ``i`` -> axis ``i % 5``)
        rope_base (float, optional): RoPE frequency base. (default: ``100.0``)
        normalize (bool, optional): divide by :math:`\phi(q)^\top z`.
            (default: ``True``)
        update_scale (float, optional): :math:`s`. (default: ``0.1``)
        chunk_size (int, optional): edges processed at once. (default: ``16384``)
        checkpointing (bool, optional): recompute chunk activations in the
            backward pass (activation checkpointing). (default: ``False``)
        zero_init (bool, optional): zero-initialise the head's last layer (a
            fresh rule is the identity); ``False`` starts it small and random
            (std ``0.01``) to leave the all-zero-weights saddle. (default: ``True``)
        min_dense (int, optional): parameter tensors with fewer edges use the
            scatter path (less per-op overhead on small graphs). (default: ``4096``)
        workers (int, optional): without autograd on CPU, threads that each
            process whole chunks with one intra-op thread (many small ops
            scale poorly with torch's intra-op threading). ``None``: torch's
            thread count; ``1``: one chunk at a time. Results agree to float
            rounding for any value. (default: ``None``)
        native (bool, optional): the no-grad float32 CPU forward uses the fused C
            kernel (:mod:`neuralgraph.rules.fused`, built on first use by
            :mod:`neuralgraph.native`; same function to float rounding, ~2x
            faster).  ``None``: when it builds here; ``True``: always (raises
            :class:`~neuralgraph.native.NativeUnavailable` if it cannot run);
            ``False``: never.  Autograd always uses the PyTorch path.
            (default: ``None``)
        data_conditioned (bool, optional): read the source and target neurons'
            mean activations on a data batch: the ``x`` given to :meth:`forward`,
            else the graph's probe batch (:meth:`~neuralgraph.meta.GraphFactory.set_data`).
            Runs on the PyTorch path (the fused kernel takes no activations).
            (default: ``False``)

    Shapes:
        - **input:** graph (or Batch) with ``weight`` :math:`(|E|)`, ``hidden``
          :math:`(|E|, H)`, ``edge_pos`` :math:`(|E|, 5)`
        - **output:** ``dw`` :math:`(|E|)`, ``dh`` :math:`(|E|, H)`
    """

    def __init__(self, hidden_dim: int = 16, heads: int = 5, head_dim: int = 4, ff_dim: int = 32,
                 head_width: int = 32, rope: bool | Sequence[bool] = True,
                 head_axes: Optional[Sequence[int]] = None, rope_base: float = 100.0,
                 normalize: bool = True, update_scale: float = 0.1, chunk_size: int = 16384,
                 checkpointing: bool = False, eps: float = 1e-6, min_dense: int = 4096,
                 zero_init: bool = True, workers: Optional[int] = None,
                 native: Optional[bool] = None, data_conditioned: bool = False) -> None:
        super().__init__(aggr="sum", node_dim=0)
        if head_dim % 2:
            raise ValueError(f"head_dim must be even for RoPE, got {head_dim}")
        self.hidden_dim = hidden_dim
        self.heads = heads
        self.head_dim = head_dim
        self.ff_dim = ff_dim
        self.head_width = head_width
        axes_on = [bool(rope)] * len(POSITION_AXES) if isinstance(rope, bool) else [bool(r) for r in rope]
        if len(axes_on) != len(POSITION_AXES):
            raise ValueError(f"rope needs one flag per axis {POSITION_AXES}, got {len(axes_on)}")
        self.rope = tuple(axes_on)
        self.head_axes = tuple(head_axes) if head_axes is not None else tuple(
            i % len(POSITION_AXES) for i in range(heads))
        if len(self.head_axes) != heads:
            raise ValueError(f"head_axes needs {heads} entries, got {len(self.head_axes)}")
        self.rope_base = rope_base
        self.normalize = normalize
        self.update_scale = update_scale
        self.chunk_size = chunk_size
        self.checkpointing = checkpointing
        self.min_dense = min_dense
        self.zero_init = zero_init
        self.workers = workers
        self.native = native
        self.data_conditioned = data_conditioned
        self.eps = eps
        d_in, dim = 1 + hidden_dim, heads * head_dim
        self.dim = dim
        self.kv = nn.Linear(d_in, 4 * dim)
        self.qu = nn.Linear(d_in, 3 * dim)
        self.proj = nn.Linear(2 * dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff_dim), nn.GELU(), nn.Linear(ff_dim, dim))
        self.norm2 = nn.LayerNorm(dim)
        self.out = nn.Linear(head_width, d_in)
        self.head = nn.Sequential(nn.Linear(dim, head_width), nn.GELU(), self.out)
        # source / target activations -> residual stream (zero at start: the update ignores the data)
        self.data_proj = nn.Linear(2, dim, bias=False) if data_conditioned else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for m in (self.kv, self.qu, self.proj, self.norm1, self.norm2, self.ff[0], self.ff[2],
                  self.head[0]):
            m.reset_parameters()
        init_update_layer(self.out, self.zero_init)
        if self.data_proj is not None:
            nn.init.zeros_(self.data_proj.weight)

    # ------------------------------------------------------------------------------
    @property
    def active_axes(self) -> Tuple[int, ...]:
        """Per head, the rotation axis or ``-1`` when that axis' RoPE is off."""
        return tuple(a if self.rope[a] else -1 for a in self.head_axes)

    def _rope(self, graph: object, chunk: Chunk, dtype: torch.dtype) -> Optional[Tensor]:
        """Unit complex RoPE factors ``[n, heads, head_dim / 2]`` of a chunk's edges (``None``:
        no head rotates).  Dense blocks use cached separable row/column tables, so no sines or
        cosines are evaluated per step; other blocks compute them from ``edge_pos``."""
        axes = self.active_axes
        if all(a < 0 for a in axes):
            return None
        b, rows, sl = chunk
        if isinstance(b, DenseBlock):
            tables = cached_block_tables(graph, b, axes, self.head_dim, self.rope_base, dtype)
            if tables is not None:
                r, c = tables  # (O, 1, 1, h, d/2), (1, C*R, 2, h, d/2)
                # full-shape factors [n, 2 (forward | backward), h, d/2]: torch's complex product
                # is several times faster without broadcasting over the inner axes
                return (r[rows] * c).view(-1, 2, self.heads, self.head_dim // 2)
        return rope_factors(rope_angles(graph.edge_pos[sl], axes, self.head_dim,  # type: ignore
                                        self.rope_base, dtype))

    def _phi_rot(self, graph: object, chunk: Chunk, x: Tensor,
                 log2_scaled: bool = False) -> Tuple[Tensor, Tensor]:
        """``phi`` of a ``[n, 2D]`` (forward | backward) query/key, unrotated and rotated
        (``log2_scaled``: ``x`` comes from a folded projection, already times ``log2(e)``)."""
        px = phi_log2(x) if log2_scaled else phi(x)  # (n, 2D)
        factors = self._rope(graph, chunk, px.dtype)
        if factors is None:
            return px, px
        n = px.size(0)
        rot = rope_apply(px.view(n, 2, self.heads, self.head_dim), factors).view(n, 2 * self.dim)
        return px, rot

    @torch.no_grad()
    def _fold(self) -> "_Folded":
        """No-grad forms of the parameters (see :class:`_Folded`), made once per call."""
        dim = self.dim
        # log2(e) folded into the query/key rows (phi_log2), 2 into the head's last layer
        # (tanh(y) = 2 sigmoid(2y) - 1)
        kv_w, kv_b, qu_w, qu_bias = (self.kv.weight.clone(), self.kv.bias.clone(), self.qu.weight.clone(),
                                     self.qu.bias.clone())
        for t in (kv_w, kv_b, qu_w, qu_bias):
            t[:2 * dim] *= LOG2E
        qu_bias[2 * dim:] += self.proj.bias  # z = u + W_o a + b_o: b_o joins u's bias
        w = self.proj.weight
        m1, c1 = _fold_norm(self.norm1, self.ff[0])
        m2, c2 = _fold_norm(self.norm2, self.head[0])
        ones = w.new_full((dim, 1), 1.0 / dim)
        return _Folded(
            kv=kv_w[:, 1:].t().contiguous(), kv_w=kv_w[:, 0].contiguous(), kv_bias=kv_b,
            qu=qu_w[:, 1:].t().contiguous(), qu_w=qu_w[:, 0].contiguous(), qu_bias=qu_bias,
            proj_f=w[:, :dim].t().contiguous(), proj_b=w[:, dim:].t().contiguous(),
            norm1=m1, bias1=c1, eps1=self.norm1.eps, ff_out=self.ff[2].weight.t().contiguous(),
            ff_bias=self.ff[2].bias, norm2=m2, bias2=c2, eps2=self.norm2.eps,
            out=(2.0 * self.out.weight).t().contiguous(), out_bias=2.0 * self.out.bias, mean=ones)

    @staticmethod
    def _project(graph: object, sl: slice, lin: nn.Linear, folded: Optional[Tuple[Tensor, ...]]) -> Tensor:
        """``lin([w, h])`` for the edges ``sl``; folded ``(W_h^T, W_w, b)``: ``b + h W_h^T + w W_w``
        without building ``[w, h]`` (a K = H matrix product and a rank-1 update)."""
        if folded is None:
            return tall_linear(edge_state(graph, sl), lin)
        wh, ww, b = folded
        w, h = graph.weight[sl], graph.hidden[sl]  # type: ignore[attr-defined]
        return torch.addmm(b, h, wh).addcmul_(w.unsqueeze(1), ww)

    def _keys(self, graph: object, chunk: Chunk, fwd: NodeStates, bwd: NodeStates,
              fold: Optional["_Folded"] = None) -> None:
        """Pass 1 for one chunk: add its keys and values to the node states."""
        sl, dim = chunk[2], self.dim
        kv = self._project(graph, sl, self.kv, None if fold is None else (fold.kv, fold.kv_w, fold.kv_bias))
        # kv: (n, 4D) = k_f | k_b | v_f | v_b.  split (not slices): with autograd each slice's
        # backward would write a zero-filled copy of the whole input
        k2, v_f, v_b = kv.split([2 * dim, dim, dim], dim=1)
        k, k_rot = self._phi_rot(graph, chunk, k2, fold is not None)
        nw = getattr(graph, "neighbour_weight", None)  # checked in forward
        if nw is not None:  # weighted sums: phi(k) (rotated or not) of edge e times nw[e, 0] | nw[e, 1]
            m = nw[sl].repeat_interleave(dim, dim=1)  # (n, 2D)
            k, k_rot = k * m, k_rot * m
        accumulate(chunk, k_rot.split(dim, dim=1), k.split(dim, dim=1), (v_f, v_b), fwd, bwd,
                   not torch.is_grad_enabled(), self.heads)

    def _keys_ckpt(self, graph: object, chunk: Chunk) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        n = self._num_nodes
        fwd = NodeStates(n, self.dim, graph.weight)  # type: ignore[attr-defined]
        bwd = NodeStates(n, self.dim, graph.weight)  # type: ignore[attr-defined]
        self._keys(graph, chunk, fwd, bwd)
        return fwd.total(), fwd.z, bwd.total(), bwd.z

    def _update(self, graph: object, chunk: Chunk, s_f: Tensor, z_f: Tensor, s_b: Tensor,
                z_b: Tensor, fold: Optional["_Folded"] = None, acts: Optional[Tensor] = None) -> Tensor:
        """Pass 2 for one chunk: attention, residual block and head -> ``[n, 1+H]``
        (``acts``: the data-conditioned rule's ``[|E|, 2]`` source / target activations)."""
        sl, dim = chunk[2], self.dim
        qu = self._project(graph, sl, self.qu, None if fold is None else (fold.qu, fold.qu_w, fold.qu_bias))
        # qu: (n, 3D) = q_f | q_b | u
        q2, u = qu.split([2 * dim, dim], dim=1)
        if acts is not None:
            u = torch.addmm(u, acts[sl], self.data_proj.weight.t())  # type: ignore[union-attr]
        q, q_rot = self._phi_rot(graph, chunk, q2, fold is not None)
        a_f, a_b = contract(chunk, q_rot.split(dim, dim=1), q.split(dim, dim=1),
                            (s_f, z_f), (s_b, z_b), self.heads, self.eps, self.normalize)
        if fold is not None:
            return self._update_folded(u, a_f, a_b, fold)
        w = self.proj.weight  # (D, 2D)
        z = torch.addmm(u + self.proj.bias, a_f, w[:, :dim].t())
        z = torch.addmm(z, a_b, w[:, dim:].t())
        z = z + self.ff(self.norm1(z))
        out = self.head(self.norm2(z))
        return torch.tanh(out) * self.update_scale

    def _update_folded(self, u: Tensor, a_f: Tensor, a_b: Tensor, fold: "_Folded") -> Tensor:
        """The no-grad tail of :meth:`_update`: same function, fewer and larger ops."""
        z = torch.addmm(u, a_f, fold.proj_f).addmm_(a_b, fold.proj_b)
        h = F.gelu(_norm_linear(z, fold.norm1, fold.bias1, fold.mean, fold.eps1))
        z.addmm_(h, fold.ff_out).add_(fold.ff_bias)
        h = F.gelu(_norm_linear(z, fold.norm2, fold.bias2, fold.mean, fold.eps2))
        out = torch.addmm(fold.out_bias, h, fold.out)
        # tanh(x) = 2 sigmoid(2x) - 1: sigmoid is several times faster than tanh on CPU
        s = self.update_scale
        return torch.sigmoid(out).mul_(2.0 * s).sub_(s)  # out is already 2y

    def edge_activations(self, graph: object, x: Optional[Tensor] = None) -> Tensor:
        """``[|E|, 2]``: the mean activation of each edge's source and target neuron on ``x``
        (else the graph's probe batch), as the data-conditioned rule reads them."""
        from neuralgraph.functional import node_activations

        x, weight, _ = probe_batch(graph, x, self.__class__.__name__)
        act = node_activations(graph, x, weight)
        src, dst = graph.edge_index  # type: ignore[attr-defined]
        return torch.stack([act[src], act[dst]], dim=1)

    def forward(self, graph: object, x: Optional[Tensor] = None) -> RuleOutput:
        if x is not None and not self.data_conditioned:
            raise ValueError("WeightTransformer is not data-conditioned; call it without x")
        check_hidden(graph, self.hidden_dim, self.__class__.__name__)
        if getattr(graph, "edge_pos", None) is None:
            raise ValueError("WeightTransformer needs graph.edge_pos [E, 5] for RoPE")
        neighbour_weight(graph, self.__class__.__name__)
        num_nodes = graph.num_nodes  # type: ignore[attr-defined]
        weight = graph.weight  # type: ignore[attr-defined]
        acts = self.edge_activations(graph, x) if self.data_conditioned else None
        # without autograd: the fused kernel where it runs (autograd always takes the PyTorch path)
        if not torch.is_grad_enabled() and self.native is not False and \
                fused.use_kernel(self, fused.can_run(self, graph)):
            return fused.wt_forward(self, graph, fused.kernel_workers(self))
        if not torch.is_grad_enabled():
            parts = list(chunks(block_layout(graph, self.min_dense), self.chunk_size))
            return self._forward_no_grad(graph, parts, num_nodes, weight, acts)
        # with autograd, small parameter tensors are cheaper as dense blocks than as scatters
        # (measured on the CNN meta-training graphs: 10-18% faster forward + backward)
        parts = list(chunks(block_layout(graph, min(self.min_dense, MIN_DENSE_GRAD)), self.chunk_size))
        fwd, bwd = NodeStates(num_nodes, self.dim, weight), NodeStates(num_nodes, self.dim, weight)
        ckpt = self.checkpointing
        self._num_nodes = num_nodes
        for c in parts:  # pass 1: node states
            if ckpt:
                sf, zf, sb, zb = checkpoint(self._keys_ckpt, graph, c, use_reentrant=False)
                fwd.s, fwd.z, bwd.s, bwd.z = fwd.s + sf, fwd.z + zf, bwd.s + sb, bwd.z + zb
            else:
                self._keys(graph, c, fwd, bwd)
        s_f, z_f = fwd.finalize(self.heads, self.head_dim)
        s_b, z_b = bwd.finalize(self.heads, self.head_dim)
        outs: List[Tensor] = [  # pass 2: per-edge updates
            checkpoint(self._update, graph, c, s_f, z_f, s_b, z_b, None, acts, use_reentrant=False)
            if ckpt else self._update(graph, c, s_f, z_f, s_b, z_b, acts=acts) for c in parts]
        out = torch.cat(outs) if len(outs) > 1 else outs[0]
        return out[:, 0], out[:, 1:]

    def _forward_no_grad(self, graph: object, parts: List[Chunk], num_nodes: int,
                         weight: Tensor, acts: Optional[Tensor] = None) -> RuleOutput:
        """Inference: folded parameters, outputs written in place, and on CPU whole chunks
        spread over ``workers`` threads (per-thread node states summed after pass 1)."""
        fold = self._fold()
        workers = chunk_workers(self.workers, weight, len(parts))
        states = [(NodeStates(num_nodes, self.dim, weight), NodeStates(num_nodes, self.dim, weight))
                  for _ in range(workers)]
        parallel_chunks(lambda i, c: self._keys(graph, c, *states[i], fold=fold), parts, workers)
        fwd, bwd = merge_states(states)
        s_f, z_f = fwd.finalize(self.heads, self.head_dim)
        s_b, z_b = bwd.finalize(self.heads, self.head_dim)
        out = weight.new_empty(weight.numel(), 1 + self.hidden_dim)

        def update(i: int, c: Chunk) -> None:
            out[c[2]] = self._update(graph, c, s_f, z_f, s_b, z_b, fold=fold, acts=acts)

        parallel_chunks(update, parts, workers)
        return out[:, 0], out[:, 1:]

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.hidden_dim}, heads={self.heads}, "
                f"head_dim={self.head_dim}, rope={all(self.rope) if len(set(self.rope)) == 1 else self.rope}"
                + (", data_conditioned=True)" if self.data_conditioned else ")"))


@dataclass
class _Folded:
    """Inference-time forms of the WeightTransformer's parameters.

    The input projections are split into a ``K = H`` matrix product over the
    hidden states and a rank-1 update with the weight (no ``[w, h]`` copy),
    the query/key rows are scaled by ``log2(e)`` (for :func:`phi_log2`), the head's
    last layer by 2 (``tanh(y) = 2 sigmoid(2y) - 1``), ``proj``'s bias joins ``u``'s,
    and each LayerNorm is
    folded into the linear layer after it:
    ``Linear(LN(z)) = rstd * (z @ [C | C (W g)^T])[:, D:] + (W beta + b)`` with the
    centring matrix ``C = I - 1/D`` and ``rstd = 1 / sqrt(mean((z C)^2) + eps)``.
    """

    kv: Tensor  # (H, 4D): hidden-state rows of kv's weight, transposed
    kv_w: Tensor  # (4D,): its weight column
    kv_bias: Tensor  # (4D,)
    qu: Tensor  # (H, 3D)
    qu_w: Tensor  # (3D,)
    qu_bias: Tensor  # (3D,): with proj's bias added to u's
    proj_f: Tensor  # (D, D)
    proj_b: Tensor  # (D, D)
    norm1: Tensor  # (D, D + ff)
    bias1: Tensor  # (ff,)
    eps1: float
    ff_out: Tensor  # (ff, D)
    ff_bias: Tensor  # (D,)
    norm2: Tensor  # (D, D + head_width)
    bias2: Tensor  # (head_width,)
    eps2: float
    out: Tensor  # (head_width, 1+H)
    out_bias: Tensor  # (1+H,)
    mean: Tensor  # (D, 1), entries 1/D


def _fold_norm(norm: nn.LayerNorm, lin: nn.Linear) -> Tuple[Tensor, Tensor]:
    """``[C | C (W g)^T]`` and ``W beta + b`` of ``lin(norm(z))`` (see :class:`_Folded`)."""
    dim = norm.normalized_shape[0]
    w = lin.weight
    g = norm.weight if norm.weight is not None else w.new_ones(dim)
    beta = norm.bias if norm.bias is not None else w.new_zeros(dim)
    c = torch.eye(dim, dtype=w.dtype, device=w.device) - 1.0 / dim
    return torch.cat([c, c @ (w * g).t()], 1), w @ beta + lin.bias


def _norm_linear(z: Tensor, m: Tensor, c: Tensor, mean: Tensor, eps: float) -> Tensor:
    """``lin(norm(z))`` from :func:`_fold_norm`'s ``(m, c)``: one matrix product for the centred
    input and the output, one for the variance."""
    dim = mean.size(0)
    y = z @ m
    xc = y[:, :dim]
    rstd = ((xc * xc) @ mean).add_(eps).rsqrt_()
    return torch.addcmul(c, y[:, dim:], rstd)
