"""Small random graphs for rule tests."""

from __future__ import annotations

from typing import Tuple

import torch
from torch_geometric.data import Batch

import neuralgraph as ng
from neuralgraph.testing import random_cnn, random_mlp


def small_graph(seed: int, hidden_dim: int = 4, limit: int = 400, kind: str = "any") -> Tuple[ng.NeuralGraph, tuple]:
    """A deterministic random MLP (odd seeds) or CNN graph with at most ``limit`` edges, float64,
    random weights and hidden states."""
    use_mlp = seed % 2 == 1 if kind == "any" else kind == "mlp"
    for s in range(seed * 1000, seed * 1000 + 1000):
        g = torch.Generator().manual_seed(s)
        if use_mlp:
            model, shape = random_mlp(g, max_width=8)
        else:
            model, shape = random_cnn(g, max_conv=2, max_channels=3, max_dense=2)
        graph = ng.to_neural_graph(model.double(), hidden_dim=hidden_dim, input_shape=shape)
        if graph.num_edges <= limit:
            graph.hidden = torch.randn(graph.hidden.shape, generator=g, dtype=torch.float64)
            return graph, shape
    raise AssertionError("no small graph found")


def small_batch(seeds=(1, 2, 3), hidden_dim: int = 4) -> Batch:
    return Batch.from_data_list([small_graph(s, hidden_dim)[0] for s in seeds])


def assert_batched_equals_unbatched(rule: torch.nn.Module, batch: Batch) -> None:
    """A rule applied to a batch gives, per graph, what it gives on that graph alone."""
    dw, dh = rule(batch)
    offset = 0
    for g in batch.to_data_list():
        gw, gh = rule(g)
        n = g.num_edges
        torch.testing.assert_close(dw[offset:offset + n], gw)
        torch.testing.assert_close(dh[offset:offset + n], gh)
        offset += n
    assert offset == dw.numel()
