"""Shared type aliases (re-exported from PyG where they exist)."""

from __future__ import annotations

from typing import Optional, Tuple

from torch import Tensor
from torch_geometric.typing import Adj, OptTensor, PairTensor

__all__ = ["Adj", "OptTensor", "PairTensor", "Shape", "OptShape", "RuleOutput"]

Shape = Tuple[int, ...]
OptShape = Optional[Shape]
#: What a local rule returns: ``(dw [E], dh [E, H])``.
RuleOutput = Tuple[Tensor, Tensor]
