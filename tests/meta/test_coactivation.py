"""Edge correlations (a Hebbian signal) and MLPRule(coactivation=...) against edge-by-edge references."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import neuralgraph as ng
from neuralgraph.errors import NeuralGraphError
from neuralgraph.functional import edge_correlations
from neuralgraph.meta import GraphFactory, MetaConfig, MetaTrainer, unroll
from neuralgraph.reference import reference_edge_correlations, reference_mlp_rule
from neuralgraph.rules import MLPRule
from neuralgraph.testing import random_mlp

from .helpers import tiny_config


def _mlp_graph(seed: int, hidden_dim: int = 3) -> ng.NeuralGraph:
    """A random float64 MLP graph without BatchNorm (dropout, odd activations and missing biases allowed)."""
    for s in range(seed * 100, seed * 100 + 100):
        g = torch.Generator().manual_seed(s)
        model, shape = random_mlp(g, max_layers=4, max_width=7)
        if any(isinstance(m, nn.BatchNorm1d) for m in model) or shape[0] < 2:
            continue
        graph = ng.to_neural_graph(model.double(), hidden_dim=hidden_dim, input_shape=shape)
        graph.hidden = torch.randn(graph.hidden.shape, generator=g, dtype=torch.float64)
        return graph
    raise AssertionError("no MLP without BatchNorm found")


@pytest.mark.parametrize("seed", range(8))
def test_edge_correlations_match_reference(seed: int) -> None:
    graph = _mlp_graph(seed)
    x = torch.randn(11, graph.arch.input_shape[0], generator=torch.Generator().manual_seed(seed),
                    dtype=torch.float64)
    got = edge_correlations(graph, x)
    torch.testing.assert_close(got, reference_edge_correlations(graph, x), atol=1e-10, rtol=1e-8)
    assert got.abs().max() <= 1.0 + 1e-9  # correlations
    bias = graph.edge_kind == 1
    assert torch.all(got[bias] == 0)  # from a constant neuron
    # with labels the output layer correlates with the one-hot target instead
    n_out = int((graph.node_role == 2).sum())
    y = torch.randint(0, n_out, (11,), generator=torch.Generator().manual_seed(seed))
    got_y = edge_correlations(graph, x, target=y)
    torch.testing.assert_close(got_y, reference_edge_correlations(graph, x, y), atol=1e-10, rtol=1e-8)
    into_out = graph.node_role[graph.edge_index[1]] == 2
    assert torch.equal(got_y[~into_out], got[~into_out])


def test_edge_correlations_known_values_and_gradient() -> None:
    """A 2-2 linear layer, identity weights: each output copies one input (correlation 1 with it)."""
    lin = nn.Linear(2, 2, bias=False).double()
    with torch.no_grad():
        lin.weight.copy_(torch.eye(2))
    graph = ng.to_neural_graph(nn.Sequential(lin), input_shape=(2,))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [-1.0, 3.0]], dtype=torch.float64)
    c = edge_correlations(graph, x, eps=0.0)
    x0, x1 = x[:, 0] - x[:, 0].mean(), x[:, 1] - x[:, 1].mean()
    r = float((x0 * x1).mean() / (x0.pow(2).mean() * x1.pow(2).mean()).sqrt())
    torch.testing.assert_close(c, torch.tensor([1.0, r, r, 1.0], dtype=torch.float64))
    w = graph.weight.clone().requires_grad_(True)
    edge_correlations(graph, x, w).sum().backward()
    assert w.grad is not None and torch.isfinite(w.grad).all()


def test_edge_correlations_errors() -> None:
    conv = ng.to_neural_graph(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2)),
                              input_shape=(1, 4, 4))
    with pytest.raises(NeuralGraphError, match="Linear layers only.*Conv2d"):
        edge_correlations(conv, torch.randn(3, 1, 4, 4))
    graph = ng.to_neural_graph(nn.Sequential(nn.Linear(3, 2)))
    with pytest.raises(NeuralGraphError, match=">= 2 samples"):
        edge_correlations(graph, torch.randn(1, 3))
    with pytest.raises(NeuralGraphError, match="labels must lie in"):
        edge_correlations(graph, torch.randn(4, 3), target=torch.tensor([0, 1, 2, 0]))
    with pytest.raises(NeuralGraphError, match=r"target must have shape \(4, 2\)"):
        edge_correlations(graph, torch.randn(4, 3), target=torch.randn(4, 3))


def _rule(coactivation: str) -> MLPRule:
    rule = MLPRule(3, width=8, data_conditioned=True, coactivation=coactivation).double()
    torch.manual_seed(0)
    for p in rule.parameters():
        nn.init.normal_(p, std=0.3)
    return rule


@pytest.mark.parametrize("coactivation", ["activity", "labels"])
def test_rule_matches_reference(coactivation: str) -> None:
    graph = _mlp_graph(3)
    rule = _rule(coactivation)
    assert rule.mlp[0].in_features == 3 * 4 + 3
    x = torch.randn(9, graph.arch.input_shape[0], dtype=torch.float64)
    n_out = int((graph.node_role == 2).sum())
    y = torch.randint(0, n_out, (9,)) if coactivation == "labels" else None
    dw, dh = rule(graph, x, y)
    rw, rh = reference_mlp_rule(rule, graph, x, y)
    torch.testing.assert_close(dw, rw, atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(dh, rh, atol=1e-10, rtol=1e-8)
    got = torch.autograd.grad(dw.sin().sum() + dh.square().sum(), list(rule.parameters()))
    want = torch.autograd.grad(rw.sin().sum() + rh.square().sum(), list(rule.parameters()))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-7)
    assert "coactivation=" + repr(coactivation) in repr(rule)


def test_rule_errors() -> None:
    with pytest.raises(ValueError, match="needs data_conditioned=True"):
        MLPRule(3, coactivation="activity")
    with pytest.raises(ValueError, match="coactivation must be"):
        MLPRule(3, data_conditioned=True, coactivation="hebb")
    graph = _mlp_graph(1)
    x = torch.randn(5, graph.arch.input_shape[0], dtype=torch.float64)
    with pytest.raises(ValueError, match="needs the batch's labels"):
        _rule("labels")(graph, x)
    with pytest.raises(ValueError, match="labels y given"):
        MLPRule(3).double()(graph, None, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="labels y given"):  # would be ignored: refused instead
        _rule("activity")(graph, x, torch.zeros(5, dtype=torch.long))


def test_probe_labels_reach_the_rule() -> None:
    """Called without a batch, the rule uses the factory's probe (x, network weights, labels)."""
    factory = GraphFactory(hidden_dim=3, weight_standardization=True)
    rule = MLPRule(3, width=8, depth=1, data_conditioned=True, coactivation="labels")
    nn.init.normal_(rule.out.weight, std=0.1)
    spec = "4-5-3"
    tmpl = factory.template(spec)
    x, y = torch.randn(12, 4), torch.randint(0, 3, (12,))
    with pytest.raises(ValueError, match="3 labels for 12"):
        factory.set_data(x, y[:3])
    factory.set_data(x, y)
    w = torch.randn(tmpl.weight.shape)
    g = factory.graph(spec, (w, tmpl.hidden.clone()))
    with torch.no_grad():
        dw, _ = rule(g)
        sig = rule._node_signals(g, x, y)[:3]
        corr = edge_correlations(g, x, factory.network_weight(spec, w), y)
        expect = rule.mlp(rule._perceive_edges(g, slice(None), *sig[:2], rule._node_signals(g, None)[2], corr))
    torch.testing.assert_close(dw, expect[:, 0])
    # other labels change the growth; gradients reach the rule's correlation input
    w1, _ = unroll(tmpl, rule, factory.fresh(spec), 3, 1.0, seed=0, use_checkpoint=False)
    factory.set_data(x, (y + 1) % 3)
    w2, _ = unroll(tmpl, rule, factory.fresh(spec), 3, 1.0, seed=0, use_checkpoint=False)
    assert not torch.allclose(w1, w2)
    w2.square().sum().backward()
    assert rule.mlp[0].weight.grad[:, -1].abs().sum() > 0


def test_trainer_with_label_coactivation(tmp_path) -> None:
    d = tiny_config(tmp_path / "co", meta_steps=3, ckpt_every=0, pool_size=0, zero_out_prob=0.0,
                    out_init_std=0.05, out_init_layer="out")
    d["rule"]["kwargs"].update(data_conditioned=True, coactivation="labels")
    tr = MetaTrainer(MetaConfig.from_dict(d))
    assert tr.factory.data_y is not None and tr.factory.data_y.shape[0] == tr.factory.data_x.shape[0]
    hist = tr.fit()
    assert len(hist) == 3 and all(torch.isfinite(torch.tensor(r["loss"])) for r in hist)
