r"""Dense block layout of a neural graph's edges, for fast neighbourhood sums.

Edges are stored in parameter memory order, so the edges of one parameter
tensor form a dense block ``[O, C, R]``: output neuron ``o``, source neuron
``c`` (input feature, channel, or channel of a flattened map) and ``R`` kernel
or spatial positions.  Inside a block every edge of row ``o`` enters node
``dst[o]`` and every edge of column ``c`` leaves node ``src[c]``; sums over
neighbourhoods then become batched matrix products instead of scatters.  A
bias vector is a block with ``C = R = 1``.

The layout is *derived from* ``edge_index`` and *verified* against it; any
parameter tensor whose edges do not have that structure (BatchNorm's diagonal,
user-permuted edges, graphs without ``arch``) becomes a :class:`ScatterBlock`
handled by plain scatter/gather, so results never depend on the layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Union

import torch
from torch import Tensor

__all__ = ["DenseBlock", "ScatterBlock", "Block", "block_layout"]


@dataclass
class DenseBlock:
    """Edges ``offset .. offset + O*C*R`` form ``[O, C, R]``; ``src [C]``, ``dst [O]`` node ids."""

    offset: int
    O: int  # noqa: E741 (rows: output neurons)
    C: int
    R: int
    src: Tensor
    dst: Tensor

    @property
    def numel(self) -> int:
        return self.O * self.C * self.R

    def __post_init__(self) -> None:
        # contiguous id ranges are read with slices (views) instead of gathers
        self._src_sl = _as_range(self.src)
        self._dst_sl = _as_range(self.dst)

    def src_index(self) -> Tensor | slice:
        """Source node ids ``[C]`` (a slice when they are a contiguous range)."""
        return self._src_sl if self._src_sl is not None else self.src

    def dst_index(self, rows: slice) -> Tensor | slice:
        """Target node ids of ``rows`` (a slice when contiguous)."""
        if self._dst_sl is not None:
            start = self._dst_sl.start
            return slice(start + rows.start, start + rows.stop)
        return self.dst[rows]


def _as_range(ids: Tensor) -> slice | None:
    n = ids.numel()
    if n == 0:
        return None
    first = int(ids[0])
    if bool((ids == torch.arange(first, first + n, device=ids.device)).all()):
        return slice(first, first + n)
    return None


@dataclass
class ScatterBlock:
    """Edges ``offset .. offset + numel`` with arbitrary ``src``/``dst`` node ids."""

    offset: int
    numel: int
    src: Tensor
    dst: Tensor


Block = Union[DenseBlock, ScatterBlock]


def _slot_sizes(graph: object) -> List[List[int]]:
    """Per graph, the sizes of ``(rows, row_length)`` of each parameter tensor, or []."""
    from torch_geometric.data import Batch

    from neuralgraph.architecture import Architecture

    archs = graph.arch if isinstance(graph, Batch) else [getattr(graph, "arch", None)]  # type: ignore
    out = []
    for arch in archs:
        if not isinstance(arch, Architecture):
            return []
        out.append([(s.shape[0], s.numel // s.shape[0]) for s in arch.param_slots])
    return out


def _dense(edge_index: Tensor, offset: int, rows: int, row_len: int) -> Block:
    n = rows * row_len
    if n == 0:
        return ScatterBlock(offset, 0, edge_index[0, :0], edge_index[1, :0])
    src = edge_index[0, offset:offset + n].view(rows, row_len)
    dst = edge_index[1, offset:offset + n].view(rows, row_len)
    first = src[0]
    # run length of the first source neuron = kernel/spatial positions per source
    change = (first[1:] != first[:-1]).nonzero()
    r = int(change[0]) + 1 if change.numel() else row_len
    if row_len % r == 0:
        c = row_len // r
        src_ids = first.view(c, r)[:, 0]
        dst_ids = dst[:, 0]
        ok = (bool((src == first).all()) and bool((first.view(c, r) == src_ids.unsqueeze(1)).all())
              and bool((dst == dst_ids.unsqueeze(1)).all()))
        if ok:
            return DenseBlock(offset, rows, c, r, src_ids, dst_ids)
    return ScatterBlock(offset, n, edge_index[0, offset:offset + n], edge_index[1, offset:offset + n])


def _merge_small(blocks: List[Block], edge_index: Tensor, min_dense: int) -> List[Block]:
    """Turn dense blocks under ``min_dense`` edges into scatter blocks and merge neighbouring
    scatter blocks: many tiny blocks (biases, small layers) cost more in per-op overhead than
    the dense path saves."""
    out: List[Block] = []
    for b in blocks:
        if isinstance(b, DenseBlock) and b.numel < min_dense:
            sl = slice(b.offset, b.offset + b.numel)
            b = ScatterBlock(b.offset, b.numel, edge_index[0, sl], edge_index[1, sl])
        if isinstance(b, ScatterBlock) and out and isinstance(out[-1], ScatterBlock) \
                and out[-1].offset + out[-1].numel == b.offset:
            prev = out.pop()
            b = ScatterBlock(prev.offset, prev.numel + b.numel, torch.cat([prev.src, b.src]),
                             torch.cat([prev.dst, b.dst]))
        out.append(b)
    return out


def block_layout(graph: object, min_dense: int = 4096) -> List[Block]:
    """The (cached) block layout of a graph or batch; see the module docstring.

    Dense blocks smaller than ``min_dense`` edges are handled as (merged) scatter
    blocks.
    """
    edge_index = graph.edge_index  # type: ignore[attr-defined]
    cached = graph.__dict__.get("_layout_cache")
    if cached is None or cached[0] is not edge_index:
        cached = (edge_index, {})  # one layout per min_dense (training and inference differ)
        graph.__dict__["_layout_cache"] = cached
    if min_dense not in cached[1]:
        cached[1][min_dense] = _layout(graph, edge_index, min_dense)
    return cached[1][min_dense]


def _layout(graph: object, edge_index: Tensor, min_dense: int) -> List[Block]:
    blocks: List[Block] = []
    sizes = _slot_sizes(graph)
    num_edges = edge_index.size(1)
    if sizes and sum(r * n for g in sizes for r, n in g) == num_edges:
        offset = 0
        for per_graph in sizes:
            for rows, row_len in per_graph:
                blocks.append(_dense(edge_index, offset, rows, row_len))
                offset += rows * row_len
    else:
        blocks.append(ScatterBlock(0, num_edges, edge_index[0], edge_index[1]))
    return _merge_small(blocks, edge_index, min_dense)
