"""The rules shipped in ``neuralgraph/checkpoints`` load and grow what their docs say they grow."""

from __future__ import annotations

import math

import pytest
import torch

from neuralgraph.demo import CHECKPOINTS
from neuralgraph.meta import grow_trajectory, load_rule
from neuralgraph.meta.trainer import factory_from_config


def test_stable_iris_rule_grows_and_holds_4_8_3():
    from neuralgraph.datasets.splits import load_split

    rule, cfg = load_rule(CHECKPOINTS / "mlp_iris_stable.pt")
    assert cfg.train.pool_size == 16 and cfg.train.loss_steps == 40  # stage 3b of the stability run
    d = cfg.data
    split = load_split(d.name, d.val_fraction, d.test_fraction, d.split_seed)
    factory = factory_from_config(cfg)
    rec = grow_trajectory(factory, rule, "4-8-3", 400, cfg.grow.fire_rate, 0, split.train)
    chance = math.log(3)
    # trained within ~100 rule steps, and still far below chance 300 steps later
    assert min(rec["loss"][:150]) < 0.3 * chance
    assert max(rec["loss"][150:]) < 0.5 * chance
    test = grow_trajectory(factory, rule, "4-8-3", 150, cfg.grow.fire_rate, 0, split.test)
    assert test["acc"][-1] >= 0.9


def test_fashion_cnn_rule_grows_a_training_cnn():
    from neuralgraph.datasets import mnist_tensors
    from neuralgraph.datasets.mnist import find_root
    from neuralgraph.meta.grow import accuracy, unroll

    try:
        find_root("fashion-mnist")
    except FileNotFoundError:
        pytest.skip("fashion-mnist not installed")
    rule, cfg = load_rule(CHECKPOINTS / "wt_fashion_cnn.pt")
    assert cfg.data.name == "fashion-mnist"
    factory = factory_from_config(cfg)
    spec = "cnn:m=0.125,k=3,h=16"
    template = factory.template(spec)
    x, y = mnist_tensors("fashion-mnist", "test", flatten=False)
    with torch.no_grad():
        w, _ = unroll(template, rule, factory.fresh(spec, torch.Generator().manual_seed(0)), 2,
                      cfg.grow.fire_rate, 0, use_checkpoint=False)
        acc = accuracy(template, factory.network_weight(spec, w), x[:1000], y[:1000])[0]
    assert acc >= 0.5  # 67.9% on the first 2,000 test images (docs/results/grow_cnn.md); chance is 10%
