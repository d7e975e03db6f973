"""Function-preserving widening of trained rules (``train.init_widen``)."""

import copy

import pytest
import torch
from torch import nn

from neuralgraph.meta import MetaConfig, MetaTrainer
from neuralgraph.meta.grow import unroll
from neuralgraph.meta.widen import widen_rule
from neuralgraph.positional import nested_code_map, position_code
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
    with pytest.raises(ValueError, match="hidden_dim 4 -> 5 needs hidden_map"):
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


def test_nested_code_map():
    """Every channel of the narrow code reappears unchanged in the wide one; codes that are
    not nested are refused with the channel named."""
    pos = torch.randint(0, 300, (64, 5))
    for old, new, base in [(10, 20, 100.0), (20, 40, 100.0), (10, 10, 1000.0), (5, 15, 100.0)]:
        hm = nested_code_map(old, new, "sinusoidal", base)
        assert len(set(hm)) == old
        torch.testing.assert_close(position_code(pos, new, base=base, dtype=torch.float64)[:, hm],
                                   position_code(pos, old, base=base, dtype=torch.float64))
    assert nested_code_map(10, 20) == [0, 1, 4, 5, 8, 9, 12, 13, 16, 17]
    with pytest.raises(ValueError, match="channel 2 .axis layer. has no equal channel"):
        nested_code_map(20, 30, "sinusoidal", 100.0)
    with pytest.raises(ValueError, match="cannot shrink"):
        nested_code_map(20, 10)


_CODE_RULES = {  # (old, new) per rule: the new one also wider in its hidden layers where it can be
    "wt": lambda w: (WeightTransformer(10, ff_dim=8, head_width=8, min_dense=0),
                     WeightTransformer(20, ff_dim=8, head_width=w, min_dense=0)),
    "mlp": lambda w: (MLPRule(10, width=8, depth=2), MLPRule(20, width=w, depth=2)),
    "mlp_data": lambda w: (MLPRule(10, width=8, data_conditioned=True),
                           MLPRule(20, width=w, data_conditioned=True)),
}


@pytest.mark.parametrize("seed", [0, 1])  # a CNN and an MLP graph
@pytest.mark.parametrize("width", [8, 16])  # the code alone, and the code with a hidden width
@pytest.mark.parametrize("kind", sorted(_CODE_RULES))
def test_wider_position_code_grows_the_same_network(seed, width, kind):
    """A rule widened to a 20-channel code grows, over several rule steps and on both execution
    paths, exactly the weights the 10-channel rule grows; the old channels evolve as before and
    the new ones stay the code they started as."""
    graph, shape = small_graph(seed, hidden_dim=10)
    x = torch.randn(16, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    code10 = position_code(graph.edge_pos, 10, base=100.0, dtype=torch.float64)
    code20 = position_code(graph.edge_pos, 20, base=100.0, dtype=torch.float64)
    hm = nested_code_map(10, 20, "sinusoidal", 100.0)
    new_channels = [j for j in range(20) if j not in hm]
    old, new = _CODE_RULES[kind](width)
    old, new = _randomise(old.double()), _randomise(new.double(), seed=1)
    assert {"out.weight", "out.bias"} <= set(widen_rule(old, new, hm))
    for grad in (True, False):
        with torch.set_grad_enabled(grad):
            g_old, g_new = graph.clone(), graph.clone()
            g_old.hidden, g_new.hidden = code10.clone(), code20.clone()
            for _ in range(3):
                for g, rule in ((g_old, old), (g_new, new)):
                    dw, dh = rule(g, x) if kind == "mlp_data" else rule(g)
                    g.weight, g.hidden = g.weight + dw, g.hidden + dh
            torch.testing.assert_close(g_new.weight, g_old.weight, rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(g_new.hidden[:, hm], g_old.hidden, rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(g_new.hidden[:, new_channels], code20[:, new_channels], rtol=0, atol=0)
    # the new channels are reachable: the columns that read them get a gradient at once
    g = graph.clone()
    g.hidden = code20.clone()
    dw, dh = new(g, x) if kind == "mlp_data" else new(g)
    (dw.square().sum() + dh.square().sum()).backward()
    first = new.kv if kind == "wt" else new.mlp[0]
    assert first.weight.grad[:, [1 + j for j in new_channels]].abs().sum() > 0


def test_wider_position_code_refusals():
    old = WeightTransformer(10)
    with pytest.raises(ValueError, match="needs hidden_map"):
        widen_rule(old, WeightTransformer(20))
    with pytest.raises(ValueError, match="10 distinct channels"):
        widen_rule(old, WeightTransformer(20), [0] * 10)
    with pytest.raises(ValueError, match="does not grow"):
        widen_rule(old, WeightTransformer(10), [1, 0, 2, 3, 4, 5, 6, 7, 8, 9])
    with pytest.raises(ValueError, match="depth-0 MLPRule"):
        widen_rule(MLPRule(4, width=8, depth=0), MLPRule(8, width=8, depth=0), [0, 2, 4, 6])


def test_trainer_widens_the_position_code(tmp_path):
    """``train.init_widen`` with a wider ``grow.hidden_dim``: the trainer maps the code and the
    widened Weight Transformer grows the same network as the rule it started from."""
    d = tiny_config(tmp_path / "small", meta_steps=2, pool_size=0, zero_out_prob=0.0)
    d["rule"] = {"name": "weight_transformer", "kwargs": {"hidden_dim": 5, "ff_dim": 8, "head_width": 8,
                                                          "zero_init": False}}
    d["grow"].update(hidden_dim=5, code_base=100.0)
    small = MetaTrainer(MetaConfig.from_file(write_config(tmp_path / "small.yaml", d)))
    rule_path = small.export_rule()
    d2 = copy.deepcopy(d)
    d2["rule"]["kwargs"]["hidden_dim"] = 15
    d2["grow"]["hidden_dim"] = 15
    d2["train"].update(init_rule=str(rule_path), init_widen=True, out_dir=str(tmp_path / "wide"))
    wide = MetaTrainer(MetaConfig.from_file(write_config(tmp_path / "wide.yaml", d2)))
    spec = small.cfg.arch.train[0]
    with torch.no_grad():
        w1, _ = unroll(small.factory.template(spec), small.rule, small.factory.fresh(spec), 2, 1.0, 0,
                       use_checkpoint=False)
        w2, _ = unroll(wide.factory.template(spec), wide.rule, wide.factory.fresh(spec), 2, 1.0, 0,
                       use_checkpoint=False)
    assert w1.abs().max() > 0
    torch.testing.assert_close(w2, w1)
    d2["grow"]["hidden_init"] = "binary"
    with pytest.raises(Exception, match="only the width"):
        MetaTrainer(MetaConfig.from_file(write_config(tmp_path / "wide2.yaml", d2)))
