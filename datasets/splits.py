"""Seeded train / validation / test splits that never overlap, and standardisation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import Tensor

__all__ = ["Split", "split_indices", "make_splits", "standardize", "load_split"]


@dataclass
class Split:
    """Disjoint ``train`` / ``val`` / ``test`` tensors ``(x, y)``."""

    train: Tuple[Tensor, Tensor]
    val: Tuple[Tensor, Tensor]
    test: Tuple[Tensor, Tensor]

    @property
    def num_features(self) -> int:
        return int(self.train[0][0].numel())

    @property
    def num_classes(self) -> int:
        return int(torch.cat([self.train[1], self.val[1], self.test[1]]).max()) + 1


def split_indices(n: int, val_fraction: float, test_fraction: float, seed: int = 0,
                  stratify: Optional[Tensor] = None) -> Tuple[Tensor, Tensor, Tensor]:
    """Random disjoint index sets covering ``range(n)``.

    With ``stratify`` (labels ``[n]``) every class is split in the same
    proportions.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"fractions must be in [0, 1) and sum below 1, got val={val_fraction}, "
                         f"test={test_fraction}")
    g = torch.Generator().manual_seed(seed)
    groups = [torch.arange(n)] if stratify is None else [
        (stratify == c).nonzero().view(-1) for c in torch.unique(stratify)]
    tr, va, te = [], [], []
    for idx in groups:
        idx = idx[torch.randperm(idx.numel(), generator=g)]
        n_te = int(round(test_fraction * idx.numel()))
        n_va = int(round(val_fraction * idx.numel()))
        te.append(idx[:n_te])
        va.append(idx[n_te:n_te + n_va])
        tr.append(idx[n_te + n_va:])
    return torch.cat(tr).sort()[0], torch.cat(va).sort()[0], torch.cat(te).sort()[0]


def standardize(split: Split) -> Split:
    """Scale features with the *training* mean and std only."""
    x = split.train[0]
    mean = x.mean(0, keepdim=True)
    std = x.std(0, keepdim=True).clamp_min(1e-6)

    def f(p: Tuple[Tensor, Tensor]) -> Tuple[Tensor, Tensor]:
        return (p[0] - mean) / std, p[1]

    return Split(f(split.train), f(split.val), f(split.test))


def make_splits(x: Tensor, y: Tensor, val_fraction: float = 0.1, test_fraction: float = 0.2,
                seed: int = 0, stratify: bool = True) -> Split:
    """Split one labelled dataset into disjoint train / val / test parts."""
    if x.size(0) != y.size(0):
        raise ValueError(f"x has {x.size(0)} rows but y has {y.size(0)}")
    tr, va, te = split_indices(x.size(0), val_fraction, test_fraction, seed, y if stratify else None)
    return Split((x[tr], y[tr]), (x[va], y[va]), (x[te], y[te]))


def load_split(name: str, val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0,
               root: Optional[str] = None, flatten: bool = True) -> Split:
    """A named dataset as a :class:`Split`.

    ``iris`` and ``digits`` are split (stratified) into train/val/test and
    standardised with train statistics; ``mnist`` / ``fashion-mnist`` keep the
    official 10,000-image test set and take ``val_fraction`` of the 60,000
    training images as validation.
    """
    key = name.lower().replace("_", "-")
    if key in ("iris", "digits"):
        from neuralgraph.datasets.tabular import load_digits, load_iris

        x, y = load_iris() if key == "iris" else load_digits()
        return standardize(make_splits(x, y, val_fraction, test_fraction, seed))
    if key in ("mnist", "fashion-mnist"):
        from neuralgraph.datasets.mnist import mnist_tensors

        x, y = mnist_tensors(key, "train", root, flatten=flatten)
        xt, yt = mnist_tensors(key, "test", root, flatten=flatten)
        tr, va, _ = split_indices(x.size(0), val_fraction, 0.0, seed)
        return Split((x[tr], y[tr]), (x[va], y[va]), (xt, yt))
    raise ValueError(f"unknown dataset {name!r}; use iris, digits, mnist or fashion-mnist")
