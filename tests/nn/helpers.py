"""Small graphs and permuted copies for encoder tests."""

from __future__ import annotations

from functools import lru_cache
from typing import Tuple

import torch

import neuralgraph as ng
from neuralgraph.testing import permute_hidden, random_cnn, random_mlp


def graph_pair(kind: str, seed: int) -> Tuple[ng.NeuralGraph, ng.NeuralGraph, tuple]:
    """A random float64 MLP/CNN graph and the graph of a hidden-permuted copy of its network."""
    graph, pgraph, shape = _graph_pair(kind, seed)
    return graph.clone(), pgraph.clone(), shape


@lru_cache(maxsize=None)
def _graph_pair(kind: str, seed: int) -> Tuple[ng.NeuralGraph, ng.NeuralGraph, tuple]:
    maker = random_mlp if kind == "mlp" else random_cnn
    for s in range(seed * 100, seed * 100 + 100):
        model, shape = maker(torch.Generator().manual_seed(s))
        graph = ng.to_neural_graph(model.double(), hidden_dim=0, input_shape=shape)
        if graph.num_edges > 3000 or int((graph.node_role == 1).sum()) < 2:
            continue
        permuted, _ = permute_hidden(model.double(), torch.Generator().manual_seed(s + 1))
        pgraph = ng.to_neural_graph(permuted, hidden_dim=0, input_shape=shape)
        if not torch.equal(pgraph.weight, graph.weight):  # the permutation did something
            return graph, pgraph, shape
    raise AssertionError("no suitable random network found")
