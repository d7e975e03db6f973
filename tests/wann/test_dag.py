import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from neuralgraph import NeuralGraphError
from neuralgraph.wann import WANN_ACTIVATIONS, WANNGraph, apply_activation, evaluate
from tests.wann.helpers import random_dag


def test_minimal_layout_and_repr():
    g = WANNGraph.minimal(4, 2, p_enable=1.0, rng=np.random.default_rng(0))
    assert g.validate()
    assert g.num_nodes == 4 + 1 + 2 and g.num_hidden == 0
    assert g.edge_index.size(1) == (4 + 1) * 2 and g.num_connections == 10
    assert str(g) == "WANNGraph(inputs=4, outputs=2, hidden=0, connections=10/10)"
    sparse = WANNGraph.minimal(256, 10, p_enable=0.05, rng=np.random.default_rng(0))
    assert 60 < sparse.num_connections < 200  # ~5% of 2570


def test_validate_errors():
    g = WANNGraph.minimal(2, 1, rng=np.random.default_rng(0))
    bad = WANNGraph.from_arrays([[0, 3], [3, 0]], [True, True], [0, 0, 0, 0], [0, 0, 3, 2])
    with pytest.raises(NeuralGraphError, match="must not leave an output"):
        bad.validate()
    swapped = WANNGraph.from_arrays([[0], [1]], [True], [0] * 3, [0, 2, 3])
    with pytest.raises(NeuralGraphError, match="nodes must be laid out"):
        swapped.validate()
    cyc = WANNGraph.from_arrays([[0, 3, 4], [3, 4, 3]], [True, False, True], [0] * 5, [0, 3, 2, 1, 1])
    with pytest.raises(NeuralGraphError, match="cycle"):
        cyc.validate()  # a disabled edge still counts: re-enabling must never close a cycle
    g.node_act[-1] = len(WANN_ACTIVATIONS)
    with pytest.raises(NeuralGraphError, match="node_act codes"):
        g.validate()
    with pytest.raises(ValueError, match="unknown WANN activation"):
        WANNGraph.minimal(2, 1, output_act="swish")


def test_activations_match_paper_definitions():
    x = torch.tensor([-1.5, -0.5, 0.0, 0.25, 2.0])
    expect = {
        "linear": x, "step": (x > 0).float(), "sin": torch.sin(np.pi * x), "cos": torch.cos(np.pi * x),
        "gaussian": torch.exp(-x ** 2 / 2), "tanh": torch.tanh(x), "sigmoid": torch.sigmoid(x),
        "inverse": -x, "abs": x.abs(), "relu": x.clamp_min(0),
    }
    assert set(expect) == set(WANN_ACTIVATIONS)
    for code, name in enumerate(WANN_ACTIVATIONS):
        torch.testing.assert_close(apply_activation(code, x), expect[name], atol=1e-6, rtol=1e-6)


def test_pyg_batch_matches_list():
    rng = np.random.default_rng(3)
    graphs = [random_dag(rng) for _ in range(3)]
    batch = Batch.from_data_list(graphs)
    assert int(batch.edge_index.max()) < batch.num_nodes  # edge_index shifted per graph
    x = torch.randn(6, 5)
    torch.testing.assert_close(evaluate(batch, x, [0.5, -2.0]), evaluate(graphs, x, [0.5, -2.0]))


def test_to_networkx_and_depth():
    rng = np.random.default_rng(1)
    g = random_dag(rng, mutations=30)
    nxg = g.to_networkx()
    import networkx as nx

    assert nx.is_directed_acyclic_graph(nxg)
    assert nxg.number_of_edges() == g.num_connections
    depth = g.depth(enabled_only=True)
    for u, v in nxg.edges():
        assert depth[v] > depth[u]
    assert {d["role"] for _, d in nxg.nodes(data=True)} >= {"input", "bias", "output"}
