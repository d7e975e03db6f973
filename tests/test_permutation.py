"""Permuting hidden neurons permutes the graph and keeps the function."""

from __future__ import annotations

import pytest
import torch

import neuralgraph as ng
from neuralgraph.testing import node_permutation, permute_hidden, random_cnn, random_mlp


def _edge_table(graph: ng.NeuralGraph, mapping: torch.Tensor) -> list:
    src, dst = mapping[graph.edge_index[0]], mapping[graph.edge_index[1]]
    rows = zip(src.tolist(), dst.tolist(), graph.edge_pos[:, 0].tolist(), graph.edge_pos[:, 3].tolist(),
               graph.edge_pos[:, 4].tolist(), graph.weight.tolist())
    return sorted(rows)


@pytest.mark.parametrize("seed", range(12))
def test_permute_hidden(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    model, shape = (random_mlp if seed % 2 else random_cnn)(g)
    permuted, perms = permute_hidden(model, g)
    x = torch.randn(4, *shape, generator=g)
    torch.testing.assert_close(permuted(x), model(x), atol=1e-5, rtol=1e-5)
    g0 = ng.to_neural_graph(model, hidden_dim=0, input_shape=shape)
    g1 = ng.to_neural_graph(permuted, hidden_dim=0, input_shape=shape)
    mapping = node_permutation(g0, perms)
    assert _edge_table(g1, mapping) == _edge_table(g0, torch.arange(g0.num_nodes))
    torch.testing.assert_close(g1.to_module()(x), model(x), atol=1e-5, rtol=1e-5)
    if any(p is not None and not torch.equal(p, torch.arange(p.numel())) for p in perms):
        assert not torch.equal(g1.weight, g0.weight)
