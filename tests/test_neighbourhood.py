"""Neighbourhood index against brute-force loops over edges."""

from __future__ import annotations

import pytest
import torch

import neuralgraph as ng
from neuralgraph.reference import brute_force_neighbourhoods
from neuralgraph.testing import random_cnn, random_mlp


def small_graph(seed: int, limit: int = 1200, hidden_dim: int = 2) -> ng.NeuralGraph:
    """The first random MLP/CNN at or after ``seed`` with at most ``limit`` edges (deterministic)."""
    for s in range(seed * 1000, seed * 1000 + 1000):
        g = torch.Generator().manual_seed(s)
        model, shape = (random_mlp if seed % 2 else random_cnn)(g, **({} if seed % 2 else {"max_channels": 3}))
        graph = ng.to_neural_graph(model, hidden_dim=hidden_dim, input_shape=shape)
        if graph.num_edges <= limit:
            return graph
    raise AssertionError("no small graph found")


@pytest.mark.parametrize("seed", range(8))
def test_neighbourhoods_match_brute_force(seed: int) -> None:
    graph = small_graph(seed)
    fwd, bwd = brute_force_neighbourhoods(graph.edge_index)
    nbr = graph.neighbourhoods()
    x = torch.randn(graph.num_edges, 3, dtype=torch.float64)
    fs, bs = nbr.forward_sum(x), nbr.backward_sum(x)
    fm, bm = nbr.forward_mean(x), nbr.backward_mean(x)
    for e in range(graph.num_edges):
        assert nbr.forward_edges(e).tolist() == fwd[e]
        assert nbr.backward_edges(e).tolist() == bwd[e]
        torch.testing.assert_close(fs[e], x[fwd[e]].sum(0))
        torch.testing.assert_close(bs[e], x[bwd[e]].sum(0))
        if fwd[e]:
            torch.testing.assert_close(fm[e], x[fwd[e]].mean(0))
        else:
            assert fm[e].abs().sum() == 0
        if bwd[e]:
            torch.testing.assert_close(bm[e], x[bwd[e]].mean(0))
    assert nbr.forward_size.tolist() == [len(f) for f in fwd]
    assert nbr.backward_size.tolist() == [len(b) for b in bwd]


def test_flatten_neighbourhood_crosses_boundary() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(2 * 2 * 2, 3))
    graph = ng.to_neural_graph(model)
    nbr = graph.neighbourhoods()
    # a conv kernel edge into channel 0: its forward neighbourhood is every dense edge
    # reading one of channel 0's 4 flattened positions (4 positions x 3 outputs)
    assert nbr.forward_edges(0).numel() == 4 * 3
    dense_edge = int((graph.edge_pos[:, 0] == 1).nonzero()[0])
    # a dense edge from channel 0: backward neighbourhood = 9 kernel edges + 1 bias edge
    assert nbr.backward_edges(dense_edge).numel() == 9 + 1
