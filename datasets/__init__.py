"""Data loaders, splits and architecture families (installed as ``neuralgraph.datasets``)."""

from neuralgraph.datasets.architectures import (
    arch_name,
    build_arch,
    cnn,
    mlp,
    mlp_grid,
    parse_arch,
    sample_cnn,
    sample_mlp,
)
from neuralgraph.datasets.mnist import find_root, load_mnist, mnist_tensors, read_idx
from neuralgraph.datasets.splits import Split, load_split, make_splits, split_indices, standardize
from neuralgraph.datasets.tabular import load_digits, load_iris

__all__ = [
    "Split",
    "arch_name",
    "build_arch",
    "cnn",
    "find_root",
    "load_digits",
    "load_iris",
    "load_mnist",
    "load_split",
    "make_splits",
    "mlp",
    "mlp_grid",
    "mnist_tensors",
    "parse_arch",
    "read_idx",
    "sample_cnn",
    "sample_mlp",
    "split_indices",
    "standardize",
]
