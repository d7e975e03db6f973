"""``smoketest_rule``: the one-line checks every rule gets."""

from __future__ import annotations

import torch
from torch import nn

import neuralgraph as ng


def smoketest_rule(rule: nn.Module, graph: ng.NeuralGraph, expected_repr: str) -> None:
    """Shapes, dtype, a backward pass, ``reset_parameters`` and ``repr``."""
    assert str(rule) == expected_repr
    dw, dh = rule(graph)
    assert dw.shape == graph.weight.shape and dh.shape == graph.hidden.shape
    assert dw.dtype == graph.weight.dtype
    # zero-initialised last layer: a fresh rule is the identity update
    assert dw.abs().max() == 0 and dh.abs().max() == 0
    for p in rule.parameters():
        nn.init.normal_(p, std=0.2)
    dw, dh = rule(graph)
    assert dw.abs().max() > 0
    (dw.square().sum() + dh.square().sum()).backward()
    grads = [p.grad for p in rule.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    rule.reset_parameters()
    dw, dh = rule(graph)
    assert dw.abs().max() == 0
