"""Small tabular datasets from scikit-learn (bundled, offline): iris and 8x8 digits."""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

__all__ = ["load_iris", "load_digits"]


def load_iris() -> Tuple[Tensor, Tensor]:
    """The 150 iris flowers: features ``[150, 4]`` (float32, raw cm), labels ``[150]`` in {0, 1, 2}."""
    from sklearn.datasets import load_iris as _load

    d = _load()
    return torch.tensor(d.data, dtype=torch.float32), torch.tensor(d.target, dtype=torch.long)


def load_digits() -> Tuple[Tensor, Tensor]:
    """The 1,797 8x8 digits: pixels ``[1797, 64]`` scaled to [0, 1], labels ``[1797]`` in 0-9."""
    from sklearn.datasets import load_digits as _load

    d = _load()
    return torch.tensor(d.data / 16.0, dtype=torch.float32), torch.tensor(d.target, dtype=torch.long)
