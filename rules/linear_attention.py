r"""Linear attention over forward and backward neighbourhoods, and RoPE.

For an edge :math:`e = (a \to b)` and its forward neighbourhood
:math:`\mathcal{N}_f(e)` (edges leaving :math:`b`), per head:

.. math::
    S_b = \sum_{g:\,\mathrm{src}(g) = b} \tilde k_g v_g^\top, \qquad
    z_b = \sum_{g:\,\mathrm{src}(g) = b} \phi(k_g), \qquad
    \mathrm{out}_e = \frac{\tilde q_e^\top S_b}{\phi(q_e)^\top z_b + \epsilon}

with :math:`\phi = \mathrm{elu} + 1`, :math:`\tilde q = R(p)\phi(q)` and
:math:`\tilde k = R(p)\phi(k)` rotated by RoPE (the denominator stays
unrotated, as in RoFormer's linear-attention variant, so it stays positive).
The backward neighbourhood is the same with edges *entering* :math:`a`.
``S`` and ``z`` live on nodes, so memory is ``O(|E| D + |V| D^2)``.

Heads are kept side by side in one width-``D`` vector (``D = heads * d``) and a
node state is one ``D x D`` matrix whose off-diagonal head blocks are masked to
zero, so that on a :class:`~neuralgraph.rules.layout.DenseBlock` every sum is a
batched matrix product over contiguous (or simply strided) memory.

Inference (no autograd) on CPU is organised for speed: RoPE factors of a dense
block come from cached separable row/column tables (:func:`cached_block_tables`),
and whole chunks run on several threads with one intra-op thread each
(:func:`parallel_chunks`), their node states summed after the first pass.

:func:`scatter_attention` is the straightforward PyG formulation (per-edge
``k v^T`` scattered to nodes, the per-node state gathered back to every edge and
contracted with ``q``); it handles irregular blocks and is the benchmark's
reference.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.utils import scatter

from neuralgraph.rules.layout import Block, DenseBlock

__all__ = [
    "phi",
    "rope_angles",
    "rope_rotate",
    "rope_factors",
    "rope_apply",
    "rope_block_tables",
    "edge_pos_cache",
    "cached_block_tables",
    "head_mask",
    "head_dot",
    "phi_log2",
    "NodeStates",
    "chunks",
    "chunk_workers",
    "parallel_chunks",
    "merge_states",
    "head_blocks",
    "accumulate",
    "contract",
    "neighbourhood_attention",
    "scatter_attention",
]

Chunk = Tuple[Block, slice, slice]  # block, rows (dense) or local range (scatter), edge slice
T = TypeVar("T")


LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453


def phi(x: Tensor) -> Tensor:
    """The positive feature map :math:`\\mathrm{elu}(x) + 1`.

    Without autograd on CPU it is :func:`phi_log2` of ``x log2(e)``: the same
    function (to float rounding), about 4x faster because torch's CPU ``exp2``
    kernel is much faster than its ``exp``/``expm1``/``elu``.
    """
    if (torch.is_grad_enabled() and x.requires_grad) or x.device.type != "cpu":
        return F.elu(x) + 1.0
    return phi_log2(x * LOG2E)


def phi_log2(x2: Tensor) -> Tensor:
    """:func:`phi` of ``x`` given ``x2 = x * log2(e)`` (no autograd):
    :math:`2^{\\min(x_2, 0)} + \\ln 2 \\max(x_2, 0)`; callers fold ``log2(e)`` into the
    projection that produces ``x``, saving one pass over the tensor."""
    return x2.clamp(max=0.0).exp2_().add_(x2.clamp(min=0.0), alpha=LN2)


def head_dot(a: Tensor, b: Tensor) -> Tensor:
    """``(a * b).sum(-1)`` for a short last axis (a head's width): without autograd a chain of
    adds, several times faster than torch's reduction over a size-4 innermost axis; with
    autograd the reduction (each ``p[..., i]``'s backward would write a zero-filled copy of ``p``)."""
    p = a * b
    if torch.is_grad_enabled() and p.requires_grad:
        return p.sum(-1)
    out = p[..., 0] + p[..., 1] if p.size(-1) > 1 else p[..., 0].clone()
    for i in range(2, p.size(-1)):
        out = out + p[..., i]
    return out


def rope_angles(edge_pos: Tensor, head_axes: Sequence[int], head_dim: int, base: float,
                dtype: torch.dtype = torch.float32) -> Tensor:
    r"""Rotation angles ``[n, heads, head_dim / 2]``: head ``i`` rotates along axis
    ``head_axes[i]`` (``-1`` = no rotation) with frequencies
    :math:`\theta_j = \mathrm{base}^{-2j/d}`."""
    j = torch.arange(head_dim // 2, device=edge_pos.device, dtype=dtype)
    theta = base ** (-2.0 * j / head_dim)  # (d/2,)
    axes = torch.tensor([max(a, 0) for a in head_axes], device=edge_pos.device)
    on = torch.tensor([a >= 0 for a in head_axes], device=edge_pos.device, dtype=dtype)
    pos = edge_pos[:, axes].to(dtype) * on  # (n, h)
    return pos.unsqueeze(-1) * theta  # (n, h, d/2)


def rope_factors(angles: Tensor) -> Tensor:
    """Unit complex numbers :math:`e^{i\\,\\mathrm{angle}}` (same shape as ``angles``)."""
    return torch.polar(torch.ones_like(angles), angles)


def rope_block_tables(edge_pos: Tensor, block: DenseBlock, head_axes: Sequence[int], head_dim: int,
                      base: float, dtype: torch.dtype = torch.float32) -> Tuple[Tensor, Tensor] | None:
    r"""Separable RoPE factors of a dense block, or ``None`` if not separable.

    In a :class:`~neuralgraph.rules.layout.DenseBlock` ``[O, C, R]`` an axis'
    position usually depends only on the row ``o`` (forward neuron) or only on
    the column ``(c, r)`` (backward neuron, kernel row/column), and each head
    rotates along one axis.  The factors of the edge ``(o, cr)`` are then
    ``rows[o] * cols[cr]`` with ``rows [O, h, d/2]`` and ``cols [C*R, h, d/2]``
    complex (the unused factor of a head is exactly 1), i.e. ``O + C*R`` instead
    of ``O*C*R`` sines and cosines.  Separability is checked on ``edge_pos``.
    """
    pos = edge_pos[block.offset:block.offset + block.numel].view(block.O, block.C * block.R, -1)
    j = torch.arange(head_dim // 2, device=edge_pos.device, dtype=dtype)
    theta = base ** (-2.0 * j / head_dim)  # (d/2,)
    h = len(head_axes)
    rows = torch.zeros(block.O, h, head_dim // 2, device=edge_pos.device, dtype=dtype)
    cols = torch.zeros(block.C * block.R, h, head_dim // 2, device=edge_pos.device, dtype=dtype)
    for i, a in enumerate(head_axes):
        if a < 0:
            continue
        p = pos[:, :, a]
        if bool((p == p[:, :1]).all()):
            rows[:, i] = p[:, 0].to(dtype).unsqueeze(-1) * theta
        elif bool((p == p[:1, :]).all()):
            cols[:, i] = p[0, :].to(dtype).unsqueeze(-1) * theta
        else:
            return None
    return rope_factors(rows), rope_factors(cols)


def edge_pos_cache(graph: object, name: str) -> Dict[tuple, object]:
    """A dict stored on ``graph`` under ``name`` for values derived from ``graph.edge_pos``: it is
    emptied when ``edge_pos`` is replaced or edited in place (tensor identity and version counter),
    and survives the shallow copies made by :func:`~neuralgraph.rules.step`."""
    edge_pos = graph.edge_pos  # type: ignore[attr-defined]
    cached = graph.__dict__.get(name)
    if cached is None or cached[0] is not edge_pos or cached[2] != edge_pos._version:
        cached = (edge_pos, {}, edge_pos._version)
        graph.__dict__[name] = cached
    return cached[1]


def cached_block_tables(graph: object, block: DenseBlock, head_axes: Sequence[int], head_dim: int,
                        base: float, dtype: torch.dtype) -> Tuple[Tensor, Tensor] | None:
    """:func:`rope_block_tables` cached on the graph object (keyed on its ``edge_pos`` tensor, so
    the cache survives the shallow copies made by :func:`~neuralgraph.rules.step`), shaped for
    factors of a forward | backward pair: rows ``[O, 1, 1, h, d/2]``, columns
    ``[1, C*R, 2, h, d/2]``; ``rows[o0:o1] * cols`` is ``[o, C*R, 2, h, d/2]``."""
    edge_pos = graph.edge_pos  # type: ignore[attr-defined]
    tables: Dict[tuple, Tuple[Tensor, Tensor] | None] = edge_pos_cache(graph, "_rope_cache")
    key = (block.offset, block.O, block.C, block.R, tuple(head_axes), head_dim, base, dtype)
    if key not in tables:
        t = rope_block_tables(edge_pos, block, head_axes, head_dim, base, dtype)
        if t is not None:
            rows, cols = t
            t = (rows[:, None, None], cols.unsqueeze(1).expand(-1, 2, -1, -1).contiguous().unsqueeze(0))
        tables[key] = t
    return tables[key]


def rope_rotate(x: Tensor, angles: Tensor) -> Tensor:
    """Rotate consecutive pairs of ``x [n, ..., h, d]`` by ``angles [n, h, d/2]``.

    Pair ``(x_{2j}, x_{2j+1})`` is treated as the complex number
    ``x_{2j} + i x_{2j+1}`` and multiplied by ``exp(i angle_j)`` (one vectorised
    complex product instead of strided real arithmetic).
    """
    return rope_apply(x, rope_factors(angles))


def rope_apply(x: Tensor, factors: Tensor) -> Tensor:
    """Rotate consecutive pairs of ``x [n, ..., h, d]`` by unit complex ``factors [n, h, d/2]``
    or ``[n, ..., h, d/2]`` (see :func:`rope_rotate`, :func:`rope_factors`)."""
    xc = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2))
    if factors.dim() != xc.dim():  # broadcast over the middle axes (slower than a full-shape table)
        factors = factors.view((factors.size(0),) + (1,) * (x.dim() - 3) + factors.shape[1:])
    return torch.view_as_real(xc * factors).flatten(-2)


def head_mask(heads: int, head_dim: int, device: torch.device | None = None,
              dtype: torch.dtype = torch.float32) -> Tensor:
    """Block-diagonal ``[D, D]`` mask keeping each head's ``d x d`` block."""
    return torch.block_diag(*[torch.ones(head_dim, head_dim, device=device, dtype=dtype)] * heads)


class NodeStates:
    """Per-node ``S [V, D, D]`` and ``z [V, D]`` for one neighbourhood kind.

    Scatter blocks add per-head states ``[V, h, d, d]`` (:meth:`add_heads`):
    only the ``h`` diagonal ``d x d`` blocks of ``S`` are ever read, so their
    per-edge outer products are ``h d^2`` instead of ``D^2`` numbers.
    """

    def __init__(self, num_nodes: int, dim: int, like: Tensor) -> None:
        self.s = like.new_zeros(num_nodes, dim, dim)
        self.z = like.new_zeros(num_nodes, dim)
        self.hs: Optional[Tensor] = None

    def _add(self, name: str, ids: Tensor, value: Tensor, inplace: bool) -> None:
        """``self.<name>[ids] += value`` (index_add: ids may repeat), in place or out of place."""
        if inplace:
            getattr(self, name).index_add_(0, ids, value)
        else:
            setattr(self, name, getattr(self, name).index_add(0, ids, value))

    def add(self, ids: Tensor, s: Tensor, z: Tensor, inplace: bool) -> None:
        self._add("s", ids, s, inplace)
        self._add("z", ids, z, inplace)

    def add_heads(self, ids: Tensor, s: Tensor, z: Tensor, inplace: bool) -> None:
        """Add per-head outer products ``s [n, h, d, d]`` and ``z [n, D]`` of edges to nodes ``ids``."""
        if self.hs is None:
            self.hs = s.new_zeros((self.s.size(0),) + tuple(s.shape[1:]))
        self._add("hs", ids, s, inplace)
        self._add("z", ids, z, inplace)

    def total(self) -> Tensor:
        """``S [V, D, D]`` with the per-head states placed on its diagonal blocks."""
        if self.hs is None:
            return self.s
        v, h, d, _ = self.hs.shape
        # diag_embed puts the last (head) axis on the diagonal of output axes 1 and 3
        return self.s + torch.diag_embed(self.hs.permute(0, 2, 3, 1), dim1=1, dim2=3).reshape(v, h * d, h * d)

    def finalize(self, heads: int, head_dim: int) -> Tuple[Tensor, Tensor]:
        """Head-masked states ``S [V, D, D]`` and normalisers ``z [V, D]``."""
        return self.total() * head_mask(heads, head_dim, self.s.device, self.s.dtype), self.z


def head_blocks(s: Tensor, heads: int) -> Tensor:
    """The diagonal ``d x d`` blocks of node states ``s [V, D, D]``, ``[V, h, d, d]`` (a copy;
    entry ``[v, k, i, j]`` is ``s[v, k d + i, k d + j]``)."""
    v, dim, _ = s.shape
    d = dim // heads
    return s.view(v, heads, d, heads, d).diagonal(dim1=1, dim2=3).permute(0, 3, 1, 2).contiguous()


def chunk_workers(workers: int | None, like: Tensor, num_chunks: int) -> int:
    """How many threads :func:`parallel_chunks` should use: ``workers`` (``None`` = torch's
    intra-op thread count), capped by the chunk count; 1 under autograd, under CPU autocast or
    off CPU."""
    if torch.is_grad_enabled() or like.device.type != "cpu" or torch.is_autocast_enabled("cpu"):
        return 1  # (autocast state is thread-local too: keep such calls on the caller's thread)
    n = torch.get_num_threads() if workers is None else workers
    return max(1, min(n, num_chunks // 2))


def parallel_chunks(fn: Callable[[int, T], None], parts: Sequence[T], workers: int) -> None:
    """Call ``fn(i, part)`` for every part, worker ``i`` taking ``parts[i::workers]`` on its own
    thread with autograd off (in inference mode if the caller is) and one intra-op thread
    (torch ops release the GIL); ``i`` lets ``fn`` use per-worker accumulators.

    Many small ops per chunk scale poorly with intra-op threads (each op is split and joined
    across cores); whole chunks per thread keep every core busy with no synchronisation
    inside a chunk.  Used by the rules' no-grad forward on CPU; ``workers == 1`` runs
    every part inline with torch's own threading.
    """
    if workers <= 1:
        for part in parts:
            fn(0, part)
        return
    # grad mode and inference mode are thread-local: carry the caller's into the workers
    # (tensors made under inference_mode may only be updated in place inside it)
    inference = torch.is_inference_mode_enabled()

    def run(i: int) -> None:
        prev = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.inference_mode() if inference else torch.no_grad():
                for part in parts[i::workers]:
                    fn(i, part)
        finally:
            torch.set_num_threads(prev)

    with ThreadPoolExecutor(workers) as pool:
        for f in [pool.submit(run, i) for i in range(workers)]:
            f.result()


def chunks(blocks: Sequence[Block], chunk_size: int) -> Iterator[Chunk]:
    """Split blocks into runs of about ``chunk_size`` edges (whole rows of dense blocks)."""
    for b in blocks:
        if isinstance(b, DenseBlock):
            per_row = b.C * b.R
            step = max(1, chunk_size // per_row)
            for o0 in range(0, b.O, step):
                o1 = min(b.O, o0 + step)
                yield b, slice(o0, o1), slice(b.offset + o0 * per_row, b.offset + o1 * per_row)
        else:
            for s0 in range(0, b.numel, chunk_size):
                s1 = min(b.numel, s0 + chunk_size)
                yield b, slice(s0, s1), slice(b.offset + s0, b.offset + s1)


def accumulate(chunk: Chunk, k_rot: Tuple[Tensor, Tensor], k: Tuple[Tensor, Tensor],
               v: Tuple[Tensor, Tensor], fwd: NodeStates, bwd: NodeStates, inplace: bool,
               heads: int) -> None:
    """Add one chunk's keys/values to the node states.

    ``fwd`` sums edges by *source* (forward neighbourhoods of the edges entering
    that node), ``bwd`` by *target*.  Each tuple holds ``(forward, backward)``
    tensors of shape ``[n, D]`` (rows may be strided).  Dense blocks add full
    ``D x D`` products (masked in :meth:`NodeStates.finalize`), scatter blocks
    per-head ones of the ``heads`` heads (:meth:`NodeStates.add_heads`).
    """
    b, rows, _ = chunk
    if isinstance(b, DenseBlock):
        o = rows.stop - rows.start
        dim = v[0].size(-1)
        # by source: contract over (o, r), batch over c
        if b.R == 1:  # batched over c straight from strided views (einsum would copy both)
            s_f = torch.bmm(k_rot[0].view(o, b.C, dim).permute(1, 2, 0), v[0].view(o, b.C, dim).permute(1, 0, 2))
        else:
            s_f = torch.einsum("ocrD,ocrE->cDE", k_rot[0].view(o, b.C, b.R, dim),
                               v[0].view(o, b.C, b.R, dim))
        z_f = k[0].view(o, b.C, b.R, dim).sum(dim=(0, 2))
        fwd.add(b.src, s_f, z_f, inplace)  # index_add: ids may repeat across chunks
        # by target: contract over (c, r), batch over o
        s_b = torch.bmm(k_rot[1].view(o, b.C * b.R, dim).transpose(1, 2), v[1].view(o, b.C * b.R, dim))
        z_b = k[1].view(o, b.C * b.R, dim).sum(1)
        bwd.add(b.dst[rows], s_b, z_b, inplace)
    else:
        n, dim = v[0].shape
        d = dim // heads
        for st, ids, kr, kk, vv in ((fwd, b.src[rows], k_rot[0], k[0], v[0]),
                                    (bwd, b.dst[rows], k_rot[1], k[1], v[1])):
            st.add_heads(ids, kr.reshape(n, heads, d, 1) * vv.reshape(n, heads, 1, d), kk, inplace)


def contract(chunk: Chunk, q_rot: Tuple[Tensor, Tensor], q: Tuple[Tensor, Tensor],
             fwd: Tuple[Tensor, Tensor], bwd: Tuple[Tensor, Tensor], heads: int,
             eps: float, normalize: bool) -> Tuple[Tensor, Tensor]:
    """Attention outputs ``(a_f, a_b)``, each ``[n, D]``, of one chunk.

    ``fwd``/``bwd`` are ``(S, z)`` from :meth:`NodeStates.finalize`.  The forward
    output of an edge reads the state of its *target* neuron, the backward
    output that of its *source* neuron.
    """
    b, rows, _ = chunk
    dim = q[0].size(-1)
    d = dim // heads
    if isinstance(b, DenseBlock):
        o, k = rows.stop - rows.start, b.C * b.R
        tgt, src = b.dst_index(rows), b.src_index()
        num_f = torch.bmm(q_rot[0].view(o, k, dim), fwd[0][tgt])  # (o, CR, D)
        if b.R == 1:  # (c, o, D) batched product from a strided view, then back to (o, c)
            num_b = torch.bmm(q_rot[1].view(o, b.C, dim).transpose(0, 1), bwd[0][src]).transpose(0, 1)
        else:
            num_b = torch.einsum("ocrD,cDE->ocrE", q_rot[1].view(o, b.C, b.R, dim), bwd[0][src])
        num_f, num_b = num_f.reshape(-1, dim), num_b.reshape(-1, dim)
        if not normalize:
            return num_f, num_b
        den_f = head_dot(q[0].view(o, k, heads, d), fwd[1][tgt].view(o, 1, heads, d))
        den_b = head_dot(q[1].view(o, b.C, b.R, heads, d), bwd[1][src].view(1, b.C, 1, heads, d))
    else:
        tgt, src = b.dst[rows], b.src[rows]
        num_f = _head_contract(q_rot[0], head_blocks(fwd[0], heads)[tgt])
        num_b = _head_contract(q_rot[1], head_blocks(bwd[0], heads)[src])
        if not normalize:
            return num_f, num_b
        den_f = head_dot(q[0].view(-1, heads, d), fwd[1][tgt].view(-1, heads, d))
        den_b = head_dot(q[1].view(-1, heads, d), bwd[1][src].view(-1, heads, d))
    n = num_f.size(0)
    a_f = (num_f.view(n, heads, d) * (den_f.reshape(n, heads, 1) + eps).reciprocal()).view(n, dim)
    a_b = (num_b.view(n, heads, d) * (den_b.reshape(n, heads, 1) + eps).reciprocal()).view(n, dim)
    return a_f, a_b


def _head_contract(q: Tensor, s: Tensor) -> Tensor:
    """``out[n, k, j] = sum_i q[n, k d + i] s[n, k, i, j]`` for ``q [n, D]`` and per-edge head
    blocks ``s [n, h, d, d]`` (from :func:`head_blocks`), as ``[n, D]`` (a broadcast product
    and a sum: faster than a batched ``1 x d`` by ``d x d`` product, with or without autograd)."""
    n, h, d, _ = s.shape
    return (q.reshape(n, h, d, 1) * s).sum(2).reshape(n, h * d)


def neighbourhood_attention(blocks: Sequence[Block], num_nodes: int, heads: int,
                            q_rot: Tuple[Tensor, Tensor], q: Tuple[Tensor, Tensor],
                            k_rot: Tuple[Tensor, Tensor], k: Tuple[Tensor, Tensor],
                            v: Tuple[Tensor, Tensor], eps: float = 1e-6, normalize: bool = True,
                            chunk_size: int = 16384) -> Tuple[Tensor, Tensor]:
    """Forward- and backward-neighbourhood linear attention for all edges.

    Every argument tuple holds ``(forward, backward)`` tensors ``[E, D]``
    (``D = heads * d``): rotated and unrotated :math:`\\phi(q)`,
    :math:`\\phi(k)`, and values.  Returns ``(a_f, a_b)``, each ``[E, D]``.
    """
    dim = v[0].size(-1)
    parts = list(chunks(blocks, chunk_size))
    workers = chunk_workers(None, v[0], len(parts))
    states = [(NodeStates(num_nodes, dim, v[0]), NodeStates(num_nodes, dim, v[0])) for _ in range(workers)]
    inplace = not torch.is_grad_enabled()

    def keys(i: int, c: Chunk) -> None:
        sl = c[2]
        accumulate(c, (k_rot[0][sl], k_rot[1][sl]), (k[0][sl], k[1][sl]), (v[0][sl], v[1][sl]),
                   *states[i], inplace, heads)

    parallel_chunks(keys, parts, workers)
    fwd, bwd = merge_states(states)
    f_states, b_states = fwd.finalize(heads, dim // heads), bwd.finalize(heads, dim // heads)
    if torch.is_grad_enabled():
        outs: List[Tuple[Tensor, Tensor]] = []
        for c in parts:
            sl = c[2]
            outs.append(contract(c, (q_rot[0][sl], q_rot[1][sl]), (q[0][sl], q[1][sl]), f_states,
                                 b_states, heads, eps, normalize))
        return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])
    a_f, a_b = v[0].new_empty(v[0].size(0), dim), v[0].new_empty(v[0].size(0), dim)

    def queries(i: int, c: Chunk) -> None:
        sl = c[2]
        a_f[sl], a_b[sl] = contract(c, (q_rot[0][sl], q_rot[1][sl]), (q[0][sl], q[1][sl]),
                                    f_states, b_states, heads, eps, normalize)

    parallel_chunks(queries, parts, workers)
    return a_f, a_b


def merge_states(states: Sequence[Tuple[NodeStates, NodeStates]]) -> Tuple[NodeStates, NodeStates]:
    """Sum per-thread ``(forward, backward)`` node states into the first pair."""
    fwd, bwd = states[0]
    for f, b in states[1:]:
        for into, st in ((fwd, f), (bwd, b)):
            into.s += st.s
            into.z += st.z
            if st.hs is not None:
                into.hs = st.hs if into.hs is None else into.hs.add_(st.hs)
    return fwd, bwd


def scatter_attention(edge_index: Tensor, num_nodes: int, heads: int, q_rot: Tensor, q: Tensor,
                      k_rot: Tensor, k: Tensor, v: Tensor, forward: bool, eps: float = 1e-6,
                      normalize: bool = True) -> Tensor:
    """The straightforward PyG way, for one neighbourhood kind: ``[E, D] -> [E, D]``.

    Per-edge per-head outer products ``k v^T`` are scattered to nodes (by source
    for forward neighbourhoods, by target for backward), then each node's
    ``[h, d, d]`` state is gathered back to every edge and contracted with ``q``.
    """
    n, dim = v.shape
    d = dim // heads
    kr, kk, vv = k_rot.view(n, heads, d), k.view(n, heads, d), v.view(n, heads, d)
    node_of_member = edge_index[0] if forward else edge_index[1]
    node_of_edge = edge_index[1] if forward else edge_index[0]
    s = scatter(kr.unsqueeze(-1) * vv.unsqueeze(-2), node_of_member, 0, dim_size=num_nodes, reduce="sum")
    num = torch.einsum("nhd,nhde->nhe", q_rot.view(n, heads, d), s[node_of_edge])
    if normalize:
        z = scatter(kk, node_of_member, 0, dim_size=num_nodes, reduce="sum")
        num = num / ((q.view(n, heads, d) * z[node_of_edge]).sum(-1, keepdim=True) + eps)
    return num.reshape(n, dim)
