"""Data-conditioned MLPRule in the meta-trainer, and resuming checkpoints older than a config option."""

import torch

import neuralgraph as ng
from neuralgraph.functional import node_activations
from neuralgraph.meta import GraphFactory, MetaConfig, MetaTrainer, unroll
from neuralgraph.meta.checkpoint import config_diff

from .helpers import tiny_config


def test_probe_batch_feeds_network_weight_activations():
    factory = GraphFactory(hidden_dim=4, weight_standardization=True)
    rule = ng.rules.MLPRule(4, width=8, depth=1, data_conditioned=True)
    torch.nn.init.normal_(rule.out.weight, std=0.1)
    spec = "4-5-3"
    tmpl = factory.template(spec)  # built before set_data: set_data must reach cached templates
    x = torch.randn(9, 4)
    factory.set_data(x)
    w = torch.randn(tmpl.weight.shape)
    g = factory.graph(spec, (w, tmpl.hidden.clone()))
    with torch.no_grad():
        act = node_activations(g, x, factory.network_weight(spec, w))
        expect = rule.mlp(rule._perceive_edges(g, slice(None), *rule._node_signals(g, None)[:2], act))
        dw, dh = rule(g)
    assert torch.allclose(dw, expect[:, 0]) and torch.allclose(dh, expect[:, 1:])
    # the probe changes the growth, and gradients reach the rule through it
    w1, _ = unroll(tmpl, rule, factory.fresh(spec), 3, 1.0, seed=0, use_checkpoint=False)
    factory.set_data(x + 1.0)
    w2, _ = unroll(tmpl, rule, factory.fresh(spec), 3, 1.0, seed=0)
    assert not torch.allclose(w1, w2)
    w2.square().sum().backward()
    first = rule.mlp[0].weight.grad
    assert first is not None and first[:, -2:].abs().sum() > 0


def test_trainer_with_data_conditioned_rule(tmp_path):
    d = tiny_config(tmp_path / "dc", meta_steps=3, ckpt_every=0, pool_size=0, zero_out_prob=0.0,
                    out_init_std=0.05, out_init_layer="out")
    d["rule"]["kwargs"]["data_conditioned"] = True
    tr = MetaTrainer(MetaConfig.from_dict(d))
    assert tr.factory.data_x is not None and tr.factory.data_x.shape[0] <= 256
    hist = tr.fit()
    assert len(hist) == 3 and all(torch.isfinite(torch.tensor(r["loss"])) for r in hist)
    assert set(tr.evaluate("val")) == {"4-4-3", "4-3-3-3"}


def test_config_diff_treats_missing_saved_keys_as_defaults(tmp_path):
    cur = MetaConfig.from_dict(tiny_config(tmp_path)).to_dict()
    old = MetaConfig.from_dict(tiny_config(tmp_path)).to_dict()
    del old["train"]["out_init_layer"], old["grow"]["hidden_bias"]  # options added after the run
    assert config_diff(old, cur) == []
    cur["train"]["out_init_layer"] = "out"
    assert config_diff(old, cur) == ["train.out_init_layer"]


def test_new_mnist_configs_parse():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "examples"
    for name in ("mnist_grid_dc", "mnist_grid_dc_warm", "mnist_grid_fast_stage2"):
        full = MetaConfig.from_file(root / f"{name}.yaml")
        quick = MetaConfig.from_file(root / f"{name}.yaml", quick=True)
        assert quick.train.meta_steps < full.train.meta_steps and quick.train.init_rule is None
    assert MetaConfig.from_file(root / "mnist_grid_dc.yaml").rule.kwargs["data_conditioned"] is True
