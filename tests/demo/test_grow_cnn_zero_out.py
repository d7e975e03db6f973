"""``examples/grow_cnn_zero_out.py``: wipe one layer of a grown CNN, regrow, score; checked by hand."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture()
def cnn_zero_out(example):
    return example("grow_cnn_zero_out")


def test_each_layer_wiped_and_regrown_matches_a_hand_computation(cnn_zero_out):
    """One row per parametrised layer; with ``fraction=0`` and every edge firing, the damaged and the
    regrown accuracies equal growing, zeroing that layer's edges and growing on by hand."""
    from neuralgraph.datasets import mnist_tensors
    from neuralgraph.demo import SHIPPED_RULE
    from neuralgraph.meta.grow import accuracy, unroll
    from neuralgraph.meta.trainer import factory_from_config, load_rule

    spec, n = "cnn:m=0.125,k=3,h=16", 300
    res = cnn_zero_out.run(None, [spec], steps=2, regrow=1, fraction=0.0, test_size=n, fire_rate=1.0)
    assert res["fire_rate"] == 1.0 and (res["steps"], res["regrow_steps"]) == (2, 1)
    rule, cfg = load_rule(SHIPPED_RULE)
    factory = factory_from_config(cfg)
    tmpl = factory.template(spec)
    layers = torch.unique(tmpl.edge_pos[:, 0]).tolist()
    assert [r["wiped_layer"] for r in res["rows"]] == layers and len(layers) == 5  # 3 conv + dense + out
    x, y = mnist_tensors("mnist", "test", flatten=False)
    x, y = x[:n], y[:n]
    with torch.no_grad():
        w, h = unroll(tmpl, rule, factory.fresh(spec, torch.Generator().manual_seed(0)), 2, 1.0, 0,
                      use_checkpoint=False)
        for row in res["rows"]:
            wz = w.clone()
            wz[tmpl.edge_pos[:, 0] == row["wiped_layer"]] = 0.0
            w2, _ = unroll(tmpl, rule, (wz, h), 1, 1.0, 7, use_checkpoint=False)
            assert row["grown"] == pytest.approx(accuracy(tmpl, factory.network_weight(spec, w), x, y)[0])
            assert row["damaged"] == pytest.approx(accuracy(tmpl, factory.network_weight(spec, wz), x, y)[0])
            assert row["regrown"] == pytest.approx(accuracy(tmpl, factory.network_weight(spec, w2), x, y)[0])
    # wiping a whole layer breaks a grown network the rule took well past chance
    assert res["rows"][0]["grown"] > 0.3 and min(r["damaged"] for r in res["rows"]) < 0.2


def test_default_fire_rate_is_the_rules_and_a_bad_rate_is_refused(cnn_zero_out):
    res = cnn_zero_out.run(None, ["cnn:m=0.125,k=3,h=16"], steps=1, regrow=1, test_size=100)
    assert res["fire_rate"] == 0.9  # the shipped rule's grow.fire_rate
    with pytest.raises(ValueError, match="fire_rate must lie in"):
        cnn_zero_out.run(None, ["cnn:m=0.125,k=3,h=16"], steps=1, regrow=1, fire_rate=0.0)


def test_validation_split_scores_the_held_out_training_images(cnn_zero_out):
    """``split="val"`` grows and damages the same networks and scores them on the meta-trainer's validation
    images; the grown accuracy equals growing by hand and scoring there; a bad split is refused."""
    from neuralgraph.datasets.splits import load_split
    from neuralgraph.demo import SHIPPED_RULE
    from neuralgraph.meta.grow import accuracy, unroll
    from neuralgraph.meta.trainer import factory_from_config, load_rule

    spec, n = "cnn:m=0.125,k=3,h=16", 200
    res = cnn_zero_out.run(None, [spec], steps=2, regrow=1, test_size=n, fire_rate=1.0, split="val")
    assert res["split"] == "val"
    rule, cfg = load_rule(SHIPPED_RULE)
    factory = factory_from_config(cfg)
    tmpl = factory.template(spec)
    x, y = load_split("mnist", cfg.data.val_fraction, 0.0, cfg.data.split_seed, flatten=False).val
    with torch.no_grad():
        w, _ = unroll(tmpl, rule, factory.fresh(spec, torch.Generator().manual_seed(0)), 2, 1.0, 0,
                      use_checkpoint=False)
    assert res["rows"][0]["grown"] == pytest.approx(accuracy(tmpl, factory.network_weight(spec, w),
                                                             x[:n], y[:n])[0])
    with pytest.raises(ValueError, match="split must be"):
        cnn_zero_out.run(None, [spec], steps=1, regrow=1, test_size=50, split="train")
