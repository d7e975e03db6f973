r"""Batched evaluation of a population of WANN topologies over shared weight values and a data batch.

A population is compiled once into a :class:`PopulationPlan`: the disjoint
union of all graphs (a PyG-style batch), with the computed (hidden and output)
nodes of *all* graphs sorted by (depth, activation).  Input and bias nodes are
shared by every graph, so their contribution is one sparse matmul.  Then each
depth level is one ``index_add`` over the edges entering it, one broadcast
multiply by the ``W`` shared weight values, and one elementwise activation per
activation code present, on contiguous slices:

.. math::
    h^{(d)} = f\big(w \cdot (A^{(d)}_{\text{in}} x + A^{(d)}_{\text{hid}} h^{(<d)})\big).

Cost per call: ``O(E_in * B + (E_hid + V) * W * B)`` with ``depth`` Python
iterations, independent of the population size.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Batch

from neuralgraph.errors import NeuralGraphError
from neuralgraph.wann.activations import apply_activation
from neuralgraph.wann.dag import BIAS, HIDDEN, INPUT, OUTPUT, WANNGraph, longest_path_depth

__all__ = ["PopulationPlan", "compile_population", "evaluate", "run_plan"]

Population = Union[Sequence[WANNGraph], Batch]


@dataclass
class PopulationPlan:
    """A compiled population (see module docstring).

    Attributes:
        num_graphs (int): ``P``.
        num_inputs (int): ``I`` (shared by all graphs).
        num_outputs (int): ``O``.
        num_computed (int): ``M``, hidden + output nodes over all graphs.
        in_rows, in_cols, in_graph (LongTensor): ``[E_in]`` input/bias edges: target row
            in ``[0, M)``, input column in ``[0, I]`` (``I`` is the bias) and graph id.
        levels (list): per depth level ``(start, end, groups, src, dst)``: computed nodes
            ``start:end``; ``groups`` a list of ``(act, start, end)`` slices; ``src``/``dst``
            the edges from computed nodes into the level (``dst`` relative to ``start``).
        out_idx (LongTensor): ``[P, O]`` rows of the output nodes.
    """

    num_graphs: int
    num_inputs: int
    num_outputs: int
    num_computed: int
    in_rows: Tensor
    in_cols: Tensor
    in_graph: Tensor
    levels: List[Tuple[int, int, List[Tuple[int, int, int]], Tensor, Tensor]]
    out_idx: Tensor
    device: torch.device

    def input_matrix(self, dtype: torch.dtype) -> Tensor:
        """Sparse CSR ``[M, I + 1]`` input/bias adjacency (cached per dtype)."""
        cache = self.__dict__.setdefault("_in_mat", {})
        if dtype not in cache:
            idx = torch.stack([self.in_rows, self.in_cols])
            val = torch.ones(idx.size(1), dtype=dtype, device=self.device)
            with warnings.catch_warnings():  # CSR is "beta" in torch; it is 3-4x faster than COO here
                warnings.simplefilter("ignore", UserWarning)
                coo = torch.sparse_coo_tensor(idx, val, (self.num_computed, self.num_inputs + 1),
                                              check_invariants=False).coalesce()
                cache[dtype] = coo.to_sparse_csr()
        return cache[dtype]


def _gather_arrays(graphs: Population) -> Tuple[np.ndarray, ...]:
    """Concatenate the population: (edge_index, enabled, act, role, ptr) as numpy, global node ids."""
    if isinstance(graphs, Batch):
        ptr = graphs.ptr.cpu().numpy()
        return (graphs.edge_index.cpu().numpy(), graphs.edge_enabled.cpu().numpy(),
                graphs.node_act.cpu().numpy(), graphs.node_role.cpu().numpy(), ptr)
    if len(graphs) == 0:
        raise ValueError("evaluate: empty population")
    sizes = np.array([g.num_nodes for g in graphs], dtype=np.int64)
    ptr = np.concatenate([[0], np.cumsum(sizes)])
    ei = np.concatenate([g.edge_index.numpy() + ptr[i] for i, g in enumerate(graphs)], axis=1)
    en = np.concatenate([g.edge_enabled.numpy() for g in graphs])
    act = np.concatenate([g.node_act.numpy() for g in graphs])
    role = np.concatenate([g.node_role.numpy() for g in graphs])
    return ei, en, act, role, ptr


def compile_population(graphs: Population, device: Optional[Union[str, torch.device]] = None) -> PopulationPlan:
    """Compile a list of :class:`WANNGraph` (or their PyG ``Batch``) for :func:`run_plan`.

    All graphs must have the same number of inputs and outputs.
    """
    ei, en, act, role, ptr = _gather_arrays(graphs)
    device = torch.device("cpu") if device is None else torch.device(device)
    num_graphs = ptr.size - 1
    graph_of = np.repeat(np.arange(num_graphs), np.diff(ptr))
    n_in = np.bincount(graph_of[role == INPUT], minlength=num_graphs)
    n_out = np.bincount(graph_of[role == OUTPUT], minlength=num_graphs)
    if (n_in != n_in[0]).any() or (n_out != n_out[0]).any():
        raise NeuralGraphError(f"all graphs of a population need the same inputs/outputs; got inputs "
                               f"{sorted(set(n_in.tolist()))}, outputs {sorted(set(n_out.tolist()))}")
    num_in, num_out = int(n_in[0]), int(n_out[0])
    ei = ei[:, en.astype(bool)]
    computed = (role == HIDDEN) | (role == OUTPUT)
    depth = longest_path_depth(ei, computed)
    # order computed nodes by (depth, act, global id) -> rows 0..M-1
    cidx = np.nonzero(computed)[0]
    order = cidx[np.lexsort((cidx, act[cidx], depth[cidx]))]
    row = np.full(role.size, -1, dtype=np.int64)
    row[order] = np.arange(order.size)
    src, dst = ei
    src_is_in = ~computed[src]
    # input / bias edges: column = local input index, bias -> I
    s_in, d_in = src[src_is_in], dst[src_is_in]
    col = np.where(role[s_in] == BIAS, num_in, s_in - ptr[graph_of[s_in]])
    in_rows, in_graph = row[d_in], graph_of[d_in]
    # hidden edges grouped by target level
    s_h, d_h = row[src[~src_is_in]], row[dst[~src_is_in]]
    o_depth, o_act = depth[order], act[order]
    bounds = np.flatnonzero(np.diff(o_depth)) + 1
    starts = np.concatenate([[0], bounds]).astype(np.int64)
    ends = np.concatenate([bounds, [order.size]]).astype(np.int64)
    e_level = np.searchsorted(ends, d_h, side="right")
    e_sort = np.argsort(e_level, kind="stable")
    s_h, d_h, e_level = s_h[e_sort], d_h[e_sort], e_level[e_sort]
    e_bounds = np.searchsorted(e_level, np.arange(starts.size + 1))
    levels = []
    for li, (s, e) in enumerate(zip(starts.tolist(), ends.tolist())):
        a = o_act[s:e]
        gb = np.concatenate([[0], np.flatnonzero(np.diff(a)) + 1, [e - s]])
        groups = [(int(a[gb[k]]), int(gb[k]), int(gb[k + 1])) for k in range(gb.size - 1)]
        es, ee = e_bounds[li], e_bounds[li + 1]
        levels.append((s, e, groups, torch.as_tensor(s_h[es:ee], device=device),
                       torch.as_tensor(d_h[es:ee] - s, device=device)))
    out_nodes = np.nonzero(role == OUTPUT)[0]  # graph-major, then output order
    out_idx = torch.as_tensor(row[out_nodes].reshape(num_graphs, num_out), device=device)
    return PopulationPlan(num_graphs, num_in, num_out, int(order.size),
                          torch.as_tensor(in_rows, device=device), torch.as_tensor(col, device=device),
                          torch.as_tensor(in_graph, device=device), levels, out_idx, device)


def run_plan(plan: PopulationPlan, x: Tensor, weights: Tensor, layout: str = "PWBO") -> Tensor:
    r"""Run a compiled population.

    Args:
        plan (PopulationPlan): from :func:`compile_population`.
        x (Tensor): inputs shared by all networks ``[B, I]``, or one batch per
            network and weight value ``[P, W, B, I]`` (control tasks).
        weights (Tensor): shared weight values ``[W]``.
        layout (str, optional): ``"PWBO"`` (a permuted view) or ``"POWB"``
            (contiguous; reductions over outputs are much faster). (default: ``"PWBO"``)

    Shapes:
        - **output:** ``[P, W, B, O]`` (or ``[P, O, W, B]``)
    """
    if layout not in ("PWBO", "POWB"):
        raise ValueError(f"layout must be 'PWBO' or 'POWB', got {layout!r}")
    if weights.dim() != 1:
        raise ValueError(f"weights must be 1-D [W], got shape {tuple(weights.shape)}")
    per_net = x.dim() == 4
    if x.dim() not in (2, 4) or x.size(-1) != plan.num_inputs or (
            per_net and tuple(x.shape[:2]) != (plan.num_graphs, weights.numel())):
        raise ValueError(f"x must be [B, {plan.num_inputs}] or [{plan.num_graphs}, {weights.numel()}, B, "
                         f"{plan.num_inputs}], got {tuple(x.shape)}")
    W, B = weights.numel(), x.size(-2)
    ones = x.new_ones(x.shape[:-1] + (1,))
    xa = torch.cat([x, ones], dim=-1)  # (..., B, I + 1)
    if per_net:  # (P, I + 1, W * B) -> gather per input edge, scatter to rows
        xg = xa.permute(0, 3, 1, 2).reshape(plan.num_graphs, plan.num_inputs + 1, W * B)
        inp = x.new_zeros(plan.num_computed, W * B)
        inp.index_add_(0, plan.in_rows, xg[plan.in_graph, plan.in_cols])
        inp = inp.view(plan.num_computed, W, B)  # (M, W, B)
    else:
        inp = (plan.input_matrix(x.dtype) @ xa.t()).unsqueeze(1)  # (M, 1, B)
    w = weights.to(x.dtype).view(1, W, 1)
    h = x.new_empty(plan.num_computed, W, B)
    for s, e, groups, src, dst in plan.levels:
        pre = inp[s:e]
        if src.numel():
            agg = x.new_zeros(e - s, W, B).index_add_(0, dst, h[src])
            pre = pre + agg
        pre = pre * w  # (n, W, B)
        for act, gs, ge in groups:
            h[s + gs:s + ge] = apply_activation(act, pre[gs:ge])
    out = h[plan.out_idx]  # (P, O, W, B)
    return out if layout == "POWB" else out.permute(0, 2, 3, 1)


def evaluate(graphs: Population, x: Tensor, weights: Union[Sequence[float], Tensor]) -> Tensor:
    r"""Outputs of every network for every shared weight value on a data batch.

    Args:
        graphs (list of WANNGraph or Batch): the population (``P`` graphs).
        x (Tensor): ``[B, I]`` or ``[P, W, B, I]`` inputs.
        weights (sequence or Tensor): ``W`` shared weight values.

    Shapes:
        - **output:** ``[P, W, B, O]``
    """
    w = torch.as_tensor(weights, dtype=x.dtype, device=x.device).reshape(-1)
    return run_plan(compile_population(graphs, device=x.device), x, w)
