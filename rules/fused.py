"""Glue between the rules and their fused C kernel (:mod:`neuralgraph.native`).

:func:`wt_forward` is the no-grad CPU forward of a :class:`WeightTransformer`
(``rules/csrc/wt_fused.c``), :func:`fused_attention` the attention aggregation
alone (the benchmark's ``attention_seconds``), :func:`mlp_forward` the no-grad
forward of an :class:`MLPRule` from its node means.  All split the edges into ranges
run on ``workers`` threads (ctypes releases the GIL), each thread with its own
node states in pass 1, summed before pass 2.  Node states keep only the heads'
diagonal ``d x d`` blocks: ``S [V, heads, d, d]``, ``z [V, D]``.
"""

from __future__ import annotations

import ctypes
import os
import platform
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from neuralgraph import native
from neuralgraph.rules.base import neighbour_weight
from neuralgraph.rules.linear_attention import edge_pos_cache

__all__ = ["available", "can_run", "use_kernel", "kernel_workers", "wt_forward", "fused_attention",
           "rope_tables", "mlp_can_run", "mlp_forward"]

_F = ctypes.POINTER(ctypes.c_float)
_I = ctypes.POINTER(ctypes.c_int64)


class _Params(ctypes.Structure):
    # mirrors WTParams in wt_fused.c
    _fields_ = [(n, ctypes.c_int64) for n in ("H", "heads", "d", "D", "FF", "HW", "npos", "naxes")] + \
        [(n, ctypes.c_float) for n in ("eps", "eps1", "eps2", "scale")] + \
        [("normalize", ctypes.c_int32), ("pad", ctypes.c_int32), ("head_axes", _I), ("cos_tab", _F),
         ("sin_tab", _F)] + \
        [(n, _F) for n in ("kv_w", "kv_b", "qu_w", "qu_b", "proj_w", "proj_b", "ln1_g", "ln1_b", "ff1_w",
                           "ff1_b", "ff2_w", "ff2_b", "ln2_g", "ln2_b", "hd1_w", "hd1_b", "out_w", "out_b")]


class _MLPParams(ctypes.Structure):
    # mirrors MLPParams in wt_fused.c
    _fields_ = [("H", ctypes.c_int64), ("depth", ctypes.c_int64), ("width", ctypes.c_int64),
                ("scale", ctypes.c_float), ("pad", ctypes.c_int32), ("w", _F * 9), ("b", _F * 9)]


_ABI = 5
_ready: set = set()


def _lib() -> Optional[ctypes.CDLL]:
    lib = native.load("wt_fused")
    if lib is None or id(lib) in _ready:
        return lib
    if lib.ng_wt_abi_version() != _ABI:  # (cannot happen with a source-keyed cache; kept as a guard)
        native._status["wt_fused"] = f"wt_fused ABI {lib.ng_wt_abi_version()} != {_ABI}: stale build, not used"
        return None
    vp, i64 = ctypes.c_void_p, ctypes.c_int64
    lib.ng_wt_keys.argtypes = [vp, i64, i64] + [vp] * 10
    lib.ng_wt_update.argtypes = [vp, i64, i64] + [vp] * 10
    lib.ng_attn_keys.argtypes = [vp, i64, i64] + [vp] * 13
    lib.ng_attn_contract.argtypes = [vp, i64, i64] + [vp] * 13
    lib.ng_mlp_update.argtypes = [vp, i64, i64] + [vp] * 7
    for f in (lib.ng_wt_keys, lib.ng_wt_update, lib.ng_attn_keys, lib.ng_attn_contract, lib.ng_mlp_update):
        f.restype = ctypes.c_int
    _ready.add(id(lib))
    return lib


def available() -> bool:
    """Whether the fused kernel builds and loads here (see :func:`neuralgraph.native.status`)."""
    return _lib() is not None


def can_run(rule: Any, graph: Any) -> Optional[str]:
    """``None`` if :func:`wt_forward` handles ``rule`` on ``graph`` now, else the reason it does not."""
    why = _common_reasons(rule, graph)
    if why is not None:
        return why
    if getattr(rule, "data_conditioned", False):
        return "the rule is data-conditioned (the kernel takes no activations)"
    if rule.hidden_dim + 1 > 512 or 4 * rule.dim > 512 or rule.ff_dim > 512 or rule.head_width > 512:
        return "a width exceeds the kernel's 512"
    if _lib() is None:
        return native.status("wt_fused")
    return None


def use_kernel(rule: Any, why: Optional[str]) -> bool:
    """Whether ``rule`` (with its ``native`` flag: ``None`` auto, ``True`` required, ``False`` never)
    takes the kernel, given :func:`can_run` / :func:`mlp_can_run`'s answer ``why``; a rule built with
    ``native=True`` that cannot use it raises :class:`~neuralgraph.native.NativeUnavailable`."""
    if rule.native is False:
        return False
    if why is not None and rule.native:
        raise native.NativeUnavailable(f"{type(rule).__name__}(native=True) cannot use the fused kernel: {why}")
    return why is None


def kernel_workers(rule: Any) -> int:
    """Threads for the kernel: the rule's ``workers``, or torch's thread count when ``None``."""
    return torch.get_num_threads() if rule.workers is None else max(1, rule.workers)


def _common_reasons(rule: Any, graph: Any) -> Optional[str]:
    weight = graph.weight
    if torch.is_grad_enabled():
        return "autograd is on (the kernel is inference-only)"
    if weight.device.type != "cpu":
        return f"graph is on {weight.device}"
    if weight.dtype != torch.float32 or graph.hidden.dtype != torch.float32:
        return f"dtype {weight.dtype} (the kernel is float32)"
    for p in rule.parameters():
        if p.dtype != torch.float32 or p.device.type != "cpu":
            return "rule parameters are not float32 on CPU"
    if torch.is_autocast_enabled("cpu"):
        return "CPU autocast is on"
    return None


def rope_tables(graph: Any, rule: Any) -> Tuple[Tensor, Tensor, Tensor]:
    """``(head_axes [h] int64, cos [P, d/2], sin [P, d/2])`` with ``P`` one more than the largest
    position on any rotating axis; positions are checked to be non-negative.  Cached on the graph
    (keyed on its ``edge_pos`` tensor and that tensor's version, so in-place edits are seen)."""
    edge_pos = graph.edge_pos
    axes = rule.active_axes
    key = (axes, rule.head_dim, rule.rope_base)
    cache = edge_pos_cache(graph, "_fused_rope_cache")
    if key not in cache:
        used = sorted({a for a in axes if a >= 0})
        npos = 1
        if used and edge_pos.numel():
            cols = edge_pos[:, used]
            if int(cols.min()) < 0:
                raise ValueError(f"edge_pos has negative positions on axes {used}; RoPE needs >= 0")
            npos = int(cols.max()) + 1
        j = torch.arange(rule.head_dim // 2, dtype=torch.float32)
        theta = rule.rope_base ** (-2.0 * j / rule.head_dim)
        ang = torch.arange(npos, dtype=torch.float32).unsqueeze(1) * theta  # as rope_angles
        cache[key] = (torch.tensor(axes, dtype=torch.int64), torch.cos(ang).contiguous(),
                      torch.sin(ang).contiguous())
    return cache[key]  # type: ignore[return-value]


def _rows(t: Tensor) -> Tensor:
    """``t [E, D]`` as float32 rows the kernel can read: unit stride along ``D``, any row stride."""
    t = t.detach().to(torch.float32)
    return t if t.dim() == 2 and t.stride(1) == 1 and t.stride(0) >= t.size(1) else t.contiguous()


_MADV_HUGEPAGE = 14
_libc: Optional[Any] = None


def _empty(*shape: int) -> Tensor:
    """``torch.empty(shape)`` (float32); buffers of more than 8 MB are advised to use transparent
    huge pages (Linux), which makes their first touch -- hundreds of thousands of 4 KB page faults
    for a step's output on a 2M-edge graph -- several times cheaper.  Advice only: ignored if
    unsupported."""
    out = torch.empty(*shape)
    nbytes = out.numel() * 4
    if nbytes > 8 << 20 and platform.system() == "Linux":
        global _libc
        try:
            if _libc is None:
                _libc = ctypes.CDLL(None, use_errno=True)
                _libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            huge = 2 << 20
            start = -(-out.data_ptr() // huge) * huge
            end = (out.data_ptr() + nbytes) // huge * huge
            if end > start:
                _libc.madvise(start, end - start, _MADV_HUGEPAGE)
        except (OSError, AttributeError):
            pass
    return out


def _check(rc: int) -> None:
    if rc != 0:
        raise MemoryError("wt_fused: could not allocate the kernel's per-thread workspace")


def _ranges(num: int, parts: int, align: int) -> List[Tuple[int, int]]:
    """``parts`` contiguous ranges covering ``[0, num)``, boundaries multiples of ``align``."""
    step = max(align, -(-num // max(1, parts) // align) * align)
    return [(s, min(num, s + step)) for s in range(0, num, step)]


def _run(fn: Callable[[int, int, int], None], ranges: Sequence[Tuple[int, int]], workers: int) -> None:
    """``fn(worker, e0, e1)`` for every range; worker ``i`` takes ``ranges[i::workers]``."""
    if workers <= 1 or len(ranges) <= 1:
        for e0, e1 in ranges:
            fn(0, e0, e1)
        return

    def job(i: int) -> None:
        for e0, e1 in ranges[i::workers]:
            fn(i, e0, e1)

    pool = _pool(workers)
    for f in [pool.submit(job, i) for i in range(workers)]:
        f.result()


_executor: Optional[Tuple[int, int, ThreadPoolExecutor]] = None
_executor_lock = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """A persistent thread pool with at least ``workers`` threads (starting threads per call costs
    several ms); recreated after a fork (a forked child has none of the parent's threads)."""
    global _executor
    with _executor_lock:
        if _executor is None or _executor[0] != os.getpid() or _executor[1] < workers:
            _executor = (os.getpid(), workers, ThreadPoolExecutor(workers, thread_name_prefix="ng-fused"))
        return _executor[2]


def _params(rule: Any, graph: Any, keep: List[Tensor]) -> _Params:
    head_axes, cos, sin = rope_tables(graph, rule)

    def f(t: Tensor) -> Any:
        t = t.detach().contiguous()
        keep.append(t)
        return ctypes.cast(t.data_ptr(), _F)

    def ln(norm: torch.nn.LayerNorm, dim: int) -> Tuple[Any, Any]:
        g = norm.weight if norm.weight is not None else torch.ones(dim)
        b = norm.bias if norm.bias is not None else torch.zeros(dim)
        return f(g), f(b)

    keep += [head_axes]
    p = _Params(H=rule.hidden_dim, heads=rule.heads, d=rule.head_dim, D=rule.dim, FF=rule.ff_dim,
                HW=rule.head_width, npos=cos.size(0), naxes=graph.edge_pos.size(1), eps=rule.eps,
                eps1=rule.norm1.eps, eps2=rule.norm2.eps, scale=rule.update_scale,
                normalize=int(rule.normalize), pad=0,
                head_axes=ctypes.cast(head_axes.data_ptr(), _I), cos_tab=f(cos), sin_tab=f(sin))
    p.kv_w, p.kv_b = f(rule.kv.weight), f(rule.kv.bias)
    p.qu_w, p.qu_b = f(rule.qu.weight), f(rule.qu.bias)
    p.proj_w, p.proj_b = f(rule.proj.weight), f(rule.proj.bias)
    p.ln1_g, p.ln1_b = ln(rule.norm1, rule.dim)
    p.ff1_w, p.ff1_b = f(rule.ff[0].weight), f(rule.ff[0].bias)
    p.ff2_w, p.ff2_b = f(rule.ff[2].weight), f(rule.ff[2].bias)
    p.ln2_g, p.ln2_b = ln(rule.norm2, rule.dim)
    p.hd1_w, p.hd1_b = f(rule.head[0].weight), f(rule.head[0].bias)
    p.out_w, p.out_b = f(rule.out.weight), f(rule.out.bias)
    return p


def _src_dst(edge_index: Tensor) -> Tuple[Tensor, Tensor]:
    return edge_index[0].to(torch.int64).contiguous(), edge_index[1].to(torch.int64).contiguous()


def _edges(graph: Any, with_pos: bool = True) -> Tuple[Tensor, Tensor, Tensor, Tensor, Optional[Tensor]]:
    src, dst = _src_dst(graph.edge_index)
    pos = graph.edge_pos.to(torch.int64).contiguous() if with_pos else None
    return graph.weight.contiguous(), graph.hidden.contiguous(), src, dst, pos


def _plan(num_edges: int, workers: int, range_size: int, tile: int) -> Tuple[List[Tuple[int, int]], int]:
    """Edge ranges (tile-aligned, about ``range_size`` long, at least 4 per thread) and the threads
    to run them on (none beyond the caller's for graphs under 16K edges per thread)."""
    workers = max(1, min(workers, num_edges // 16384))
    ranges = _ranges(num_edges, max(workers * 4, -(-num_edges // range_size)), tile)
    return ranges, max(1, min(workers, len(ranges)))


def _pass1(keys: Callable[[int, int, int, List[Tensor]], None], ranges: Sequence[Tuple[int, int]],
           workers: int, num_nodes: int, hdd: int, dim: int) -> List[Tensor]:
    """Run ``keys(worker, e0, e1, states)`` over the ranges, each thread adding into its own node
    states ``[S_f [V, hdd], z_f [V, dim], S_b, z_b]``, and return their sum."""
    states = [[torch.zeros(num_nodes, hdd), torch.zeros(num_nodes, dim), torch.zeros(num_nodes, hdd),
               torch.zeros(num_nodes, dim)] for _ in range(workers)]
    _run(lambda i, e0, e1: keys(i, e0, e1, states[i]), ranges, workers)
    total = states[0]
    for other in states[1:]:
        for a, b in zip(total, other):
            a += b
    return total


def wt_forward(rule: Any, graph: Any, workers: int, range_size: int = 65536) -> Tuple[Tensor, Tensor]:
    """The fused no-grad forward of a WeightTransformer: ``(dw [E], dh [E, H])``.

    Call only where :func:`can_run` returns ``None``."""
    lib = _lib()
    assert lib is not None
    keep: List[Tensor] = []
    p = _params(rule, graph, keep)
    pp = ctypes.byref(p)
    w, hid, src, dst, pos = _edges(graph)
    num_edges = w.numel()
    ranges, workers = _plan(num_edges, workers, range_size, lib.ng_wt_tile())
    wp, hp, sp, dp, pp_ = w.data_ptr(), hid.data_ptr(), src.data_ptr(), dst.data_ptr(), pos.data_ptr()
    nw = neighbour_weight(graph, "fused.wt_forward")  # checked: the kernel reads [E][2] floats
    if nw is not None:
        nw = nw.detach().to(torch.float32).contiguous()
        keep.append(nw)
    nwp = None if nw is None else nw.data_ptr()

    def keys(i: int, e0: int, e1: int, states: List[Tensor]) -> None:
        _check(lib.ng_wt_keys(pp, e0, e1, wp, hp, sp, dp, pp_, nwp, *(s.data_ptr() for s in states)))

    total = _pass1(keys, ranges, workers, int(graph.num_nodes), rule.heads * rule.head_dim ** 2, rule.dim)
    out = _empty(num_edges, 1 + rule.hidden_dim)
    sptrs = [s.data_ptr() for s in total]

    def update(i: int, e0: int, e1: int) -> None:
        _check(lib.ng_wt_update(pp, e0, e1, wp, hp, sp, dp, pp_, *sptrs, out.data_ptr()))

    _run(update, ranges, workers)
    del keep
    return out[:, 0], out[:, 1:]


def fused_attention(edge_index: Tensor, num_nodes: int, heads: int, q_rot: Tuple[Tensor, Tensor],
                    q: Tuple[Tensor, Tensor], k_rot: Tuple[Tensor, Tensor], k: Tuple[Tensor, Tensor],
                    v: Tuple[Tensor, Tensor], eps: float = 1e-6, normalize: bool = True,
                    workers: Optional[int] = None, range_size: int = 65536) -> Tuple[Tensor, Tensor]:
    """Forward- and backward-neighbourhood linear attention with the fused kernel; arguments and
    result as :func:`~neuralgraph.rules.linear_attention.neighbourhood_attention` (float32 CPU,
    no autograd).  Raises :class:`~neuralgraph.native.NativeUnavailable` without the kernel."""
    lib = _lib()
    if lib is None:
        raise native.NativeUnavailable(native.status("wt_fused"))
    ins = [_rows(t) for t in (*q_rot, *q, *k_rot, *k, *v)]  # strided rows are read in place
    qrf, qrb, qf, qb, krf, krb, kf, kb, vf, vb = ins
    num_edges, dim = vf.shape
    ld_keys = torch.tensor([t.stride(0) for t in (krf, kf, vf, krb, kb, vb)], dtype=torch.int64)
    ld_q = torch.tensor([t.stride(0) for t in (qrf, qf, qrb, qb)], dtype=torch.int64)
    d = dim // heads
    p = _Params(H=0, heads=heads, d=d, D=dim, FF=0, HW=0, npos=1, naxes=0, eps=eps, eps1=0.0, eps2=0.0,
                scale=0.0, normalize=int(normalize), pad=0)
    pp = ctypes.byref(p)
    src, dst = _src_dst(edge_index)
    ranges, workers = _plan(num_edges, torch.get_num_threads() if workers is None else workers, range_size,
                            lib.ng_wt_tile())

    def keys(i: int, e0: int, e1: int, states: List[Tensor]) -> None:
        _check(lib.ng_attn_keys(pp, e0, e1, *(t.data_ptr() for t in (krf, kf, vf, krb, kb, vb, ld_keys, src, dst)),
                                *(s.data_ptr() for s in states)))

    total = _pass1(keys, ranges, workers, num_nodes, heads * d * d, dim)
    a_f, a_b = _empty(num_edges, dim), _empty(num_edges, dim)

    def contract(i: int, e0: int, e1: int) -> None:
        _check(lib.ng_attn_contract(pp, e0, e1, *(t.data_ptr() for t in (qrf, qf, qrb, qb, ld_q, src, dst)),
                                    *(s.data_ptr() for s in total), a_f.data_ptr(), a_b.data_ptr()))

    _run(contract, ranges, workers)
    return a_f, a_b


def mlp_can_run(rule: Any, graph: Any) -> Optional[str]:
    """``None`` if :func:`mlp_forward` handles the :class:`MLPRule` ``rule`` on ``graph`` now, else why not."""
    why = _common_reasons(rule, graph)
    if why is not None:
        return why
    if rule.data_conditioned:
        return "data-conditioned MLPRule (the kernel takes no activations)"
    if rule.depth + 1 > 9 or 3 * (1 + rule.hidden_dim) > 512 or rule.width > 512:
        return "depth or width exceeds the kernel's limits (8 hidden layers, width 512)"
    if _lib() is None:
        return native.status("wt_fused")
    return None


def mlp_forward(rule: Any, graph: Any, node_in: Tensor, node_out: Tensor, workers: int,
                range_size: int = 65536) -> Tuple[Tensor, Tensor]:
    """The fused no-grad forward of an :class:`MLPRule` from its node means ``[V, 1+H]`` (in-edge and
    out-edge states): ``(dw [E], dh [E, H])``.  Call only where :func:`mlp_can_run` returns ``None``."""
    lib = _lib()
    assert lib is not None
    layers = [m for m in rule.mlp if isinstance(m, torch.nn.Linear)]
    keep = [t.detach().contiguous() for m in layers for t in (m.weight, m.bias)]
    p = _MLPParams(H=rule.hidden_dim, depth=rule.depth, width=rule.width, scale=rule.update_scale, pad=0)
    for i in range(len(layers)):
        p.w[i] = ctypes.cast(keep[2 * i].data_ptr(), _F)
        p.b[i] = ctypes.cast(keep[2 * i + 1].data_ptr(), _F)
    pp = ctypes.byref(p)
    w, hid, src, dst, _ = _edges(graph, with_pos=False)
    node_in, node_out = node_in.contiguous(), node_out.contiguous()
    num_edges = w.numel()
    ranges, workers = _plan(num_edges, workers, range_size, lib.ng_wt_tile())
    out = _empty(num_edges, 1 + rule.hidden_dim)
    ptrs = [t.data_ptr() for t in (w, hid, src, dst, node_in, node_out, out)]

    def update(i: int, e0: int, e1: int) -> None:
        _check(lib.ng_mlp_update(pp, e0, e1, *ptrs))

    _run(update, ranges, workers)
    del keep
    return out[:, 0], out[:, 1:]
