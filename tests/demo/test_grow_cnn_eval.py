"""``examples/grow_cnn_eval.py``: the CNN grid evaluation, its dataset switch and its Adam baseline."""

from __future__ import annotations

import pytest


@pytest.fixture()
def grid_eval(example):
    return example("grow_cnn_eval")


def test_grid_with_adam_baseline(grid_eval, tmp_path):
    res = grid_eval.run(None, ms=[0.125], hs=[16, 32], ks=[3], steps=1, test_size=300, adam_steps=200,
                        out=str(tmp_path / "g"))
    assert res["dataset"] == "mnist"
    assert len(res["acc"]["3"]) == 2 and len(res["acc"]["3"][0]) == 1
    assert len(res["adam_acc"]["3"]) == 2 and len(res["adam_acc"]["3"][0]) == 1
    # 200 Adam steps of batch 64 take a tiny CNN well past chance (10%)
    assert all(0.3 < v <= 1.0 for row in res["adam_acc"]["3"] for v in row)
    assert res["adam_mean"] == pytest.approx(sum(v for row in res["adam_acc"]["3"] for v in row) / 2)
    assert (tmp_path / "g.png").exists() and (tmp_path / "g.json").exists()
    # cnn:m=0.125,k=3,h=16 is a training CNN of the shipped rule: only the h=32 cell is unseen
    assert res["unseen_cells"] == 1 and res["unseen_mean"] == res["acc"]["3"][1][0]
    assert res["unseen_mean_per_kernel"] == {"3": res["unseen_mean"]}


def test_grid_on_fashion_mnist(grid_eval):
    from neuralgraph.datasets.mnist import find_root

    try:
        find_root("fashion-mnist")
    except FileNotFoundError:
        pytest.skip("fashion-mnist not installed")
    res = grid_eval.run(None, ms=[0.125], hs=[16], ks=[5], steps=1, test_size=200, dataset="fashion-mnist")
    assert res["dataset"] == "fashion-mnist" and 0.0 <= res["mean"] <= 1.0 and "adam_acc" not in res


def test_grid_fire_rate(grid_eval):
    """Every edge firing: the shipped rule's training rate is replaced, recorded, and growth no
    longer depends on the seed; a rate outside (0, 1] is refused."""
    kw = dict(ms=[0.125], hs=[16], ks=[4], test_size=300)
    base = grid_eval.run(None, **kw)
    assert base["fire_rate"] == 0.9  # the shipped rule's grow.fire_rate
    full = [grid_eval.run(None, seed=s, fire_rate=1.0, **kw) for s in (0, 1)]
    assert full[0]["fire_rate"] == 1.0 and full[0]["acc"] == full[1]["acc"]
    with pytest.raises(ValueError, match="fire_rate must lie in"):
        grid_eval.run(None, fire_rate=1.5, **kw)


def test_grid_on_the_validation_split(grid_eval):
    """``split="val"`` grows the same networks and scores them on the meta-trainer's validation images
    (held out of the training set), which differ from the test images; a bad split name is refused."""
    import torch

    from neuralgraph.datasets.splits import load_split
    from neuralgraph.demo import SHIPPED_RULE
    from neuralgraph.meta.grow import accuracy, unroll
    from neuralgraph.meta.trainer import factory_from_config, load_rule

    kw = dict(ms=[0.125], hs=[16], ks=[5], steps=1, test_size=300, fire_rate=1.0)
    val = grid_eval.run(None, split="val", **kw)
    test = grid_eval.run(None, **kw)
    assert val["split"] == "val" and test["split"] == "test"
    # the same grown network, scored by hand on the first 300 validation images
    rule, cfg = load_rule(SHIPPED_RULE)
    cfg.set_fire_rate(1.0)
    factory = factory_from_config(cfg)
    spec = "cnn:m=0.125,k=5,h=16"
    x, y = load_split("mnist", cfg.data.val_fraction, 0.0, cfg.data.split_seed, flatten=False).val
    with torch.no_grad():
        w, _ = unroll(factory.template(spec), rule, factory.fresh(spec, torch.Generator().manual_seed(0)), 1, 1.0, 0,
                      use_checkpoint=False)
        want = accuracy(factory.template(spec), factory.network_weight(spec, w), x[:300], y[:300])[0]
    assert val["acc"]["5"][0][0] == pytest.approx(want)
    assert val["acc"] != test["acc"]  # 300 other images: the two accuracies differ
    with pytest.raises(ValueError, match="split must be"):
        grid_eval.run(None, split="train", **kw)
