"""Rule registry and the stochastic step."""

from __future__ import annotations

import pytest
import torch

import neuralgraph as ng
from neuralgraph import rules
from neuralgraph.rules import MLPRule, WeightTransformer
from tests.rules.helpers import small_graph


class _ConstRule(rules.Rule):
    def forward(self, graph: object, x: object = None) -> tuple:
        return torch.ones_like(graph.weight), torch.ones_like(graph.hidden)


def test_registry() -> None:
    assert rules.get("mlp") is MLPRule
    assert rules.get("weight_transformer") is WeightTransformer
    assert rules.get("neuralgraph.rules.mlp_rule:MLPRule") is MLPRule
    assert {"mlp", "weight_transformer"} <= set(rules.available())
    with pytest.raises(ValueError, match="unknown rule 'nope'"):
        rules.get("nope")
    with pytest.raises(ValueError, match="cannot import"):
        rules.get("no_such_pkg.mod:Rule")
    with pytest.raises(ValueError, match="has no rule"):
        rules.get("neuralgraph.rules.mlp_rule:Missing")


def test_step_fire_rate_and_purity() -> None:
    graph, _ = small_graph(1, hidden_dim=3)
    w0, h0 = graph.weight.clone(), graph.hidden.clone()
    rule = _ConstRule(3)
    out = ng.step(graph, rule, fire_rate=0.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(graph.weight, w0) and torch.equal(graph.hidden, h0)  # input untouched
    fired = torch.isclose(out.weight - w0, torch.ones_like(w0))
    assert torch.equal(torch.isclose(out.hidden - h0, torch.ones_like(h0)).all(1), fired)
    assert torch.equal(out.weight[~fired], w0[~fired])
    assert 0 < fired.float().mean() < 1
    assert out.edge_index is graph.edge_index  # structure shared, not copied
    full = ng.step(graph, rule, fire_rate=1.0)
    torch.testing.assert_close(full.weight, w0 + 1)
    again = ng.step(graph, rule, fire_rate=0.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.weight, out.weight)
    with pytest.raises(ValueError, match="fire_rate"):
        ng.step(graph, rule, fire_rate=1.5)


def test_backprop_through_many_steps() -> None:
    graph, _ = small_graph(3, hidden_dim=4)
    rule = MLPRule(4, width=8).double()
    torch.nn.init.normal_(rule.out.weight, std=0.01)
    g = graph
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):
        g = ng.step(g, rule, fire_rate=0.8, generator=gen)
    g.weight.square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in rule.parameters())
    assert rule.out.weight.grad.abs().sum() > 0
