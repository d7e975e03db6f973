r"""Forward and backward neighbourhoods as node-level segments.

For an edge :math:`e = (a \to b)`:

* forward neighbourhood :math:`\mathcal{N}_f(e)` = edges leaving :math:`b`;
* backward neighbourhood :math:`\mathcal{N}_b(e)` = edges entering :math:`a`.

Both are whole node segments, so any sum over a neighbourhood is a scatter of
edge values to nodes (by source for :math:`\mathcal{N}_f`, by target for
:math:`\mathcal{N}_b`) followed by a gather back to edges.  No ``E x fan-out``
tensor is ever built.  The CSR views (``out_ptr``/``out_perm``,
``in_ptr``/``in_perm``) list the members explicitly when they are needed.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.utils import scatter

__all__ = ["Neighbourhoods"]


class Neighbourhoods:
    r"""Neighbourhood index of a graph (or a batch of graphs).

    Args:
        edge_index (Tensor): ``[2, E]`` source and target neurons.
        num_nodes (int): number of neurons :math:`|V|`.

    Shapes:
        - **edge_index:** ``[2, |E|]``
        - **out_degree / in_degree:** ``[|V|]``
    """

    def __init__(self, edge_index: Tensor, num_nodes: int) -> None:
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"edge_index must be [2, E], got {tuple(edge_index.shape)}")
        self.edge_index = edge_index
        self.num_nodes = int(num_nodes)
        self.src, self.dst = edge_index[0], edge_index[1]
        ones = torch.ones(edge_index.size(1), device=edge_index.device)
        self.out_degree = scatter(ones, self.src, 0, dim_size=self.num_nodes, reduce="sum")
        self.in_degree = scatter(ones, self.dst, 0, dim_size=self.num_nodes, reduce="sum")
        self._out_csr: Optional[Tuple[Tensor, Tensor]] = None
        self._in_csr: Optional[Tuple[Tensor, Tensor]] = None

    # sizes ------------------------------------------------------------------------
    @property
    def forward_size(self) -> Tensor:
        """``|N_f(e)|`` for every edge, ``[E]``."""
        return self.out_degree[self.dst]

    @property
    def backward_size(self) -> Tensor:
        """``|N_b(e)|`` for every edge, ``[E]``."""
        return self.in_degree[self.src]

    # aggregations ------------------------------------------------------------------
    def node_out_sum(self, x: Tensor) -> Tensor:
        """Sum of edge values over each node's outgoing edges: ``[E, *] -> [V, *]``."""
        return scatter(x, self.src, 0, dim_size=self.num_nodes, reduce="sum")

    def node_in_sum(self, x: Tensor) -> Tensor:
        """Sum of edge values over each node's incoming edges: ``[E, *] -> [V, *]``."""
        return scatter(x, self.dst, 0, dim_size=self.num_nodes, reduce="sum")

    def forward_sum(self, x: Tensor) -> Tensor:
        """``sum_{f in N_f(e)} x_f`` for every edge: ``[E, *] -> [E, *]``."""
        return self.node_out_sum(x)[self.dst]

    def backward_sum(self, x: Tensor) -> Tensor:
        """``sum_{f in N_b(e)} x_f`` for every edge: ``[E, *] -> [E, *]``."""
        return self.node_in_sum(x)[self.src]

    def forward_mean(self, x: Tensor) -> Tensor:
        """Mean over :math:`\\mathcal{N}_f(e)` (zero where it is empty)."""
        deg = self.out_degree.clamp(min=1).to(x.dtype)
        node = self.node_out_sum(x) / deg.view(-1, *([1] * (x.dim() - 1)))
        return node[self.dst]

    def backward_mean(self, x: Tensor) -> Tensor:
        """Mean over :math:`\\mathcal{N}_b(e)` (zero where it is empty)."""
        deg = self.in_degree.clamp(min=1).to(x.dtype)
        node = self.node_in_sum(x) / deg.view(-1, *([1] * (x.dim() - 1)))
        return node[self.src]

    # explicit membership -----------------------------------------------------------
    @staticmethod
    def _csr(index: Tensor, num_nodes: int) -> Tuple[Tensor, Tensor]:
        perm = torch.argsort(index, stable=True)
        counts = torch.bincount(index, minlength=num_nodes)
        ptr = torch.zeros(num_nodes + 1, dtype=torch.long, device=index.device)
        ptr[1:] = torch.cumsum(counts, 0)
        return ptr, perm

    @property
    def out_csr(self) -> Tuple[Tensor, Tensor]:
        """``(ptr [V+1], perm [E])``: out-edges of node ``n`` are ``perm[ptr[n]:ptr[n+1]]``."""
        if self._out_csr is None:
            self._out_csr = self._csr(self.src, self.num_nodes)
        return self._out_csr

    @property
    def in_csr(self) -> Tuple[Tensor, Tensor]:
        """``(ptr [V+1], perm [E])``: in-edges of node ``n`` are ``perm[ptr[n]:ptr[n+1]]``."""
        if self._in_csr is None:
            self._in_csr = self._csr(self.dst, self.num_nodes)
        return self._in_csr

    def forward_edges(self, e: int) -> Tensor:
        """Edge ids of :math:`\\mathcal{N}_f(e)` (ascending)."""
        ptr, perm = self.out_csr
        n = int(self.dst[e])
        return perm[ptr[n]:ptr[n + 1]]

    def backward_edges(self, e: int) -> Tensor:
        """Edge ids of :math:`\\mathcal{N}_b(e)` (ascending)."""
        ptr, perm = self.in_csr
        n = int(self.src[e])
        return perm[ptr[n]:ptr[n + 1]]

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(num_nodes={self.num_nodes}, "
                f"num_edges={self.edge_index.size(1)})")
