import pytest
import torch

from neuralgraph.datasets import load_split, make_splits, split_indices


@pytest.mark.parametrize("seed", [0, 3])
def test_splits_disjoint_and_cover(seed):
    y = torch.arange(100) % 3
    tr, va, te = split_indices(100, 0.1, 0.2, seed, stratify=y)
    all_idx = torch.cat([tr, va, te])
    assert all_idx.numel() == 100 and torch.unique(all_idx).numel() == 100
    assert te.numel() == pytest.approx(20, abs=2) and va.numel() == pytest.approx(10, abs=2)
    assert torch.equal(split_indices(100, 0.1, 0.2, seed, stratify=y)[2], te)  # seeded


def test_bad_fractions():
    with pytest.raises(ValueError, match="fractions"):
        split_indices(10, 0.6, 0.5)


def test_iris_split_standardised_no_overlap():
    s = load_split("iris", 0.1, 0.2, seed=0)
    assert s.train[0].shape[1] == 4 and s.num_classes == 3
    assert s.train[0].size(0) + s.val[0].size(0) + s.test[0].size(0) == 150
    assert s.train[0].mean(0).abs().max() < 1e-5
    rows = {tuple(r.tolist()) for r in s.train[0]}
    assert not any(tuple(r.tolist()) in rows for r in s.test[0])


def test_make_splits_shape_error():
    with pytest.raises(ValueError, match="rows"):
        make_splits(torch.zeros(5, 2), torch.zeros(4))


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset"):
        load_split("cifar")
