r"""A WANN champion as a trainable ``nn.Module`` with one weight per enabled edge."""

from __future__ import annotations

from typing import List, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from neuralgraph.wann.activations import apply_activation
from neuralgraph.wann.dag import HIDDEN, OUTPUT, WANNGraph

__all__ = ["WANNModule"]


class WANNModule(nn.Module):
    r"""Run a :class:`WANNGraph` with individual (trainable) edge weights.

    .. math::
        h_v = f_v\Big(\sum_{u \to v} w_{uv} h_u\Big)

    With every :math:`w_{uv}` equal to the shared value :math:`w` this is the
    function the batched evaluator computes for that weight value (up to
    float summation order).  Only enabled edges become parameters, in the
    order they appear in ``graph.edge_index``.

    Args:
        graph (WANNGraph): the topology (validated).
        weight (float, optional): initial value of every edge weight. (default: ``1.0``)

    Shapes:
        - **input:** ``[B, I]``
        - **output:** ``[B, O]``
    """

    def __init__(self, graph: WANNGraph, weight: float = 1.0) -> None:
        super().__init__()
        graph.validate()
        self.init_weight = float(weight)
        self.num_inputs = graph.num_inputs
        self.num_outputs = graph.num_outputs
        self.num_hidden = graph.num_hidden
        role, act = graph.node_role.numpy(), graph.node_act.numpy()
        en = graph.edge_enabled.numpy()
        ei = graph.edge_index.numpy()[:, en]
        depth = graph.depth(enabled_only=True)
        computed = np.nonzero((role == HIDDEN) | (role == OUTPUT))[0]
        order = computed[np.lexsort((computed, act[computed], depth[computed]))]
        # column of every node in the value table [x | 1 | computed nodes in `order`]
        col = np.arange(role.size)
        col[order] = self.num_inputs + 1 + np.arange(order.size)
        src, dst = col[ei[0]], col[ei[1]]
        self.num_edges = int(src.size)
        self.weight = nn.Parameter(torch.empty(self.num_edges))
        levels: List[Tuple[int, int, List[Tuple[int, int, int]]]] = []
        o_depth, o_act = depth[order], act[order]
        start = self.num_inputs + 1
        for d in np.unique(o_depth).tolist():
            sel = np.nonzero(o_depth == d)[0]
            s, e = start + int(sel[0]), start + int(sel[-1]) + 1
            a = o_act[sel]
            gb = np.concatenate([[0], np.flatnonzero(np.diff(a)) + 1, [a.size]])
            levels.append((s, e, [(int(a[gb[k]]), int(gb[k]), int(gb[k + 1])) for k in range(gb.size - 1)]))
        self.levels = levels
        for i, (s, e, _) in enumerate(levels):
            sel = np.nonzero((dst >= s) & (dst < e))[0]
            self.register_buffer(f"edge_{i}", torch.as_tensor(sel), persistent=False)
            self.register_buffer(f"src_{i}", torch.as_tensor(src[sel]), persistent=False)
            self.register_buffer(f"dst_{i}", torch.as_tensor(dst[sel] - s), persistent=False)
        self.register_buffer("out_cols", torch.as_tensor(col[np.nonzero(role == OUTPUT)[0]]), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Set every edge weight back to the shared initial value."""
        with torch.no_grad():
            self.weight.fill_(self.init_weight)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.size(1) != self.num_inputs:
            raise ValueError(f"WANNModule expects input [B, {self.num_inputs}], got {tuple(x.shape)}")
        vals = torch.cat([x, x.new_ones(x.size(0), 1)], dim=1)  # (B, I + 1 + done)
        for i, (s, e, groups) in enumerate(self.levels):
            edge, src, dst = (self.get_buffer(f"{k}_{i}") for k in ("edge", "src", "dst"))
            msg = vals[:, src] * self.weight[edge].to(x.dtype)  # (B, E_d)
            pre = x.new_zeros(x.size(0), e - s).index_add(1, dst, msg)
            vals = torch.cat([vals] + [apply_activation(a, pre[:, gs:ge]) for a, gs, ge in groups], dim=1)
        return vals[:, self.get_buffer("out_cols")]

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.num_inputs}, {self.num_outputs}, hidden={self.num_hidden}, "
                f"connections={self.num_edges})")
