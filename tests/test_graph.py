"""NeuralGraph container: attributes, batching, validation, export."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch

import neuralgraph as ng
from neuralgraph.testing import random_cnn, random_mlp


def _graphs() -> list:
    out = []
    for seed in range(4):
        g = torch.Generator().manual_seed(seed)
        model, shape = (random_mlp if seed % 2 else random_cnn)(g)
        out.append((model, shape, ng.to_neural_graph(model, hidden_dim=3, input_shape=shape)))
    return out


def test_node_attributes() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.Softmax(-1))
    g = ng.to_neural_graph(model)
    # inputs 3, bias 1, hidden 4, bias 1, outputs 2
    assert g.num_nodes == 11
    assert g.node_role.tolist() == [0, 0, 0, 3, 1, 1, 1, 1, 3, 2, 2]
    acts = [ng.ACTIVATIONS[a] for a in g.node_act.tolist()]
    assert acts[4:8] == ["ReLU"] * 4 and acts[9:] == ["Softmax"] * 2
    assert g.edge_kind.tolist() == [0] * 12 + [1] * 4 + [0] * 8 + [1] * 2
    # edge 5 is W[1, 2] (memory order o * 3 + i): input 2 -> hidden neuron 1 (node 5)
    assert g.edge_index[:, 5].tolist() == [2, 5]
    assert g.edge_pos[5].tolist() == [0, 2, 1, 0, 0]


def test_batch_of_different_architectures() -> None:
    items = _graphs()
    batch = Batch.from_data_list([g for _, _, g in items])
    assert batch.num_edges == sum(g.num_edges for _, _, g in items)
    assert int(batch.edge_index.max()) < batch.num_nodes
    outs = ng.forward_batch(batch, [torch.randn(2, *s) for _, s, _ in items])
    assert len(outs) == len(items)
    for (model, shape, g), back in zip(items, batch.to_data_list()):
        assert torch.equal(back.edge_index, g.edge_index)
        x = torch.randn(2, *shape)
        assert torch.equal(back.to_module()(x), model(x))
    with pytest.raises(ng.NeuralGraphError, match="to_data_list"):
        batch.to_module()


def test_forward_batch_matches_single() -> None:
    items = _graphs()
    batch = Batch.from_data_list([g for _, _, g in items])
    xs = [torch.randn(2, *s) for _, s, _ in items]
    for (model, _, _), x, y in zip(items, xs, ng.forward_batch(batch, xs)):
        torch.testing.assert_close(y, model(x))


def test_validate_reports_bad_fields() -> None:
    g = ng.to_neural_graph(nn.Sequential(nn.Linear(3, 2)))
    assert g.validate()
    g.weight = g.weight[:-1]
    with pytest.raises(ng.NeuralGraphError, match=r"weight must have shape \(8,\)"):
        g.validate()
    g = ng.to_neural_graph(nn.Sequential(nn.Linear(3, 2)))
    g.edge_index = g.edge_index.clone()
    g.edge_index[0, 0] = 99
    with pytest.raises(ng.NeuralGraphError, match="edge_index values"):
        g.validate()


def test_to_networkx() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 2), nn.Flatten(), nn.Linear(2 * 2 * 2, 2))
    g = ng.to_neural_graph(model)
    nxg = ng.to_networkx(g, hidden=True)
    assert nxg.number_of_nodes() == g.num_nodes
    assert nxg.number_of_edges() == g.num_edges  # multigraph: kernel positions kept apart
    src, dst = g.edge_index[:, 7].tolist()
    attrs = nxg.get_edge_data(src, dst)[7]
    assert attrs["weight"] == pytest.approx(float(g.weight[7]))
    assert attrs["pos"] == tuple(g.edge_pos[7].tolist())
    assert len(attrs["hidden"]) == g.hidden_dim
    assert nxg.nodes[0]["role"] == "input"


def test_hidden_position_codes() -> None:
    pos = torch.tensor([[0, 1, 2, 0, 1], [0, 1, 2, 0, 1], [1, 0, 0, 0, 0]])
    code = ng.position_code(pos, 10)
    assert code.shape == (3, 10)
    assert torch.equal(code[0], code[1]) and not torch.equal(code[0], code[2])
    binary = ng.position_code(pos, 10, "binary")
    assert set(binary.unique().tolist()) <= {-1.0, 1.0}
    assert ng.position_code(pos, 4, "zeros").abs().sum() == 0
    with pytest.raises(ValueError, match="unknown position code"):
        ng.position_code(pos, 4, "fourier")
