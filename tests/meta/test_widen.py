"""Function-preserving widening of trained rules (``train.init_widen``)."""

import pytest
import torch
from torch import nn

from neuralgraph.meta import MetaConfig, MetaTrainer
from neuralgraph.meta.widen import widen_rule
from neuralgraph.rules import MLPRule, WeightTransformer
from tests.meta.helpers import tiny_config, write_config
from tests.rules.helpers import small_graph


def _randomise(rule: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial weights everywhere (a fresh rule's zero update layer would hide errors)."""
    torch.manual_seed(seed)
    for p in rule.parameters():
        nn.init.normal_(p, std=0.3)
    return rule


@pytest.mark.parametrize("seed", [0, 1])  # a CNN and an MLP graph
@pytest.mark.parametrize("make_old,make_new", [
    (lambda: MLPRule(4, width=8, depth=2), lambda: MLPRule(4, width=19, depth=2)),
    (lambda: MLPRule(4, width=8, depth=1), lambda: MLPRule(4, width=8, depth=1)),
    (lambda: WeightTransformer(4, ff_dim=8, head_width=8, min_dense=0),
     lambda: WeightTransformer(4, ff_dim=16, head_width=24, min_dense=0)),
])
def test_widened_rule_computes_the_same_update(seed, make_old, make_new):
    graph, _ = small_graph(seed)
    old = _randomise(make_old().double())
    new = _randomise(make_new().double(), seed=1)  # the new units' fan-in stays random
    widened = widen_rule(old, new)
    # each widened tensor is named once, also where two names share it (MLPRule.out is mlp[-1])
    ptrs = [new.state_dict()[n].data_ptr() for n in widened]
    assert len(ptrs) == len(set(ptrs))
    assert (len(widened) > 0) == any(p.shape != q.shape for p, q in zip(old.parameters(), new.parameters()))
    for grad in (True, False):  # the autograd path and the no-grad (fused where it builds) path
        with torch.set_grad_enabled(grad):
            (dw0, dh0), (dw1, dh1) = old(graph), new(graph)
        torch.testing.assert_close(dw1, dw0, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(dh1, dh0, rtol=1e-10, atol=1e-12)
    # the extra capacity is reachable: the new units' fan-out gets a gradient at once
    dw, dh = new(graph)
    (dw.square().sum() + dh.square().sum()).backward()
    extra = new.out.weight.grad[:, old.out.in_features:]
    assert extra.size(1) == new.out.in_features - old.out.in_features
    assert extra.numel() == 0 or extra.abs().sum() > 0


def test_refuses_what_would_not_preserve_the_function():
    old = MLPRule(4, width=8)
    with pytest.raises(ValueError, match="hidden_dim 4 -> 5"):
        widen_rule(old, MLPRule(5, width=16))
    with pytest.raises(ValueError, match="cannot shrink"):
        widen_rule(old, MLPRule(4, width=4))
    with pytest.raises(ValueError, match="depth 2 -> 3"):
        widen_rule(old, MLPRule(4, width=8, depth=3))
    with pytest.raises(ValueError, match="heads 5 -> 6"):
        widen_rule(WeightTransformer(4), WeightTransformer(4, heads=6))
    with pytest.raises(ValueError, match="cannot load a MLPRule into a WeightTransformer"):
        widen_rule(old, WeightTransformer(4))


def test_trainer_init_widen(tmp_path):
    """A tiny run's rule continued with a wider MLP starts as exactly that rule; without
    ``init_widen`` the shapes do not fit and the error says so."""
    d = tiny_config(tmp_path / "small", meta_steps=2, pool_size=0, zero_out_prob=0.0)
    small = MetaTrainer(MetaConfig.from_file(write_config(tmp_path / "small.yaml", d)))
    small.fit()
    rule_path = small.export_rule()
    d2 = tiny_config(tmp_path / "wide", meta_steps=2, init_rule=str(rule_path), init_widen=True)
    d2["rule"]["kwargs"]["width"] = 20
    wide = MetaTrainer(MetaConfig.from_file(write_config(tmp_path / "wide.yaml", d2)))
    graph, _ = small_graph(1)
    with torch.no_grad():
        a, b = small.rule.double()(graph), wide.rule.double()(graph)
    torch.testing.assert_close(b[0], a[0])
    torch.testing.assert_close(b[1], a[1])
    d2["train"]["init_widen"] = False
    with pytest.raises(Exception, match="does not fit"):
        MetaTrainer(MetaConfig.from_file(write_config(tmp_path / "wide2.yaml", d2)))
