"""The example scripts' ``--quick`` settings (seconds each)."""

import importlib
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def examples(monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    return lambda name: importlib.import_module(name)


def test_iris_results_quick(examples, tmp_path, capsys):
    assert examples("iris_results").main(["--quick", "--json", str(tmp_path / "r.json")]) == 0
    res = json.loads((tmp_path / "r.json").read_text())
    assert set(res["results"]["4-8-3"]) == {"2", "3"}
    assert 0.0 <= res["results"]["4-8-3"]["3"]["mean"] <= 1.0


def test_stability_quick_and_metric(examples, tmp_path):
    mod = examples("stability")
    assert mod.stability([3.0, 2.0, 1.0, 1.05, 1.2, 1.0, 2.5], chance=2.4) == {
        "steps_to_min": 2, "steps_within_10pct": 1, "min_loss": 1.0, "count_within_10pct": 2,
        "steps_below_chance": 3, "truncated": 0}
    assert mod.main(["--quick", "--json", str(tmp_path / "s.json"), "--plot", str(tmp_path / "s.png")]) == 0
    res = json.loads((tmp_path / "s.json").read_text())
    assert [v["pool_size"] for v in res["rules"].values()] == [8, 0]
    assert (tmp_path / "s.png").is_file()


def test_stability_fire_rate(examples, tmp_path):
    """``--fire-rate 1`` updates every edge: growth from zero weights is then the same for every seed; the
    default is the rule's training fire rate (0.8 for the shipped stable rule), whose masks differ by seed."""
    mod = examples("stability")
    rule = "neuralgraph/checkpoints/mlp_iris_stable.pt"
    det = mod.run([rule], "4-8-3", 30, 2, fire_rate=1.0)
    v = det["rules"][rule]
    assert det["fire_rate"] == 1.0 and v["fire_rate"] == 1.0
    assert v["per_seed"][0] == v["per_seed"][1]
    sto = mod.run([rule], "4-8-3", 30, 2)["rules"][rule]
    assert sto["fire_rate"] == 0.8
    assert sto["per_seed"][0]["min_loss"] != sto["per_seed"][1]["min_loss"]


def test_zero_out_quick(examples, tmp_path):
    assert examples("zero_out").main(["--quick", "--json", str(tmp_path / "z.json"),
                                      "--plot", str(tmp_path / "z.png")]) == 0
    run = json.loads((tmp_path / "z.json").read_text())["runs"][0]
    assert run["zeroed_layer"] in (0, 1, 2) and len(run["curve"]["acc"]) == len(run["curve"]["step"])


def test_zero_out_on_the_validation_split(examples, tmp_path):
    """``--split val`` scores on iris's 15 validation flowers (the quick config's split), not the 30 test ones."""
    assert examples("zero_out").main(["--quick", "--split", "val", "--json", str(tmp_path / "z.json")]) == 0
    res = json.loads((tmp_path / "z.json").read_text())
    assert res["split"] == "val"
    run = res["runs"][0]
    assert all(abs(a * 15 - round(a * 15)) < 1e-4 for a in run["curve"]["acc"])
    # the curve up to the zero-out is the growth scored by hand on the validation split
    from neuralgraph.datasets.splits import load_split
    from neuralgraph.meta import grow_trajectory, load_rule
    from neuralgraph.meta.trainer import factory_from_config

    rule, cfg = load_rule(res["rule"])
    d = cfg.data
    val = load_split(d.name, d.val_fraction, d.test_fraction, d.split_seed).val
    want = grow_trajectory(factory_from_config(cfg), rule, "4-8-8-3", run["peak_step"], cfg.grow.fire_rate, 0, val)
    assert run["curve"]["acc"][:run["peak_step"] + 1] == pytest.approx(want["acc"])
    with pytest.raises(SystemExit):
        examples("zero_out").main(["--quick", "--split", "train"])


def test_zero_out_wipes_the_layer_asked_for(examples, tmp_path):
    assert examples("zero_out").main(["--quick", "--layer", "0", "--json", str(tmp_path / "z.json")]) == 0
    run = json.loads((tmp_path / "z.json").read_text())["runs"][0]
    assert run["zeroed_layer"] == 0
    argv = ["--quick", "--layer", "1", "--fraction", "0", "--json", str(tmp_path / "y.json")]
    assert examples("zero_out").main(argv) == 0
    res = json.loads((tmp_path / "y.json").read_text())
    assert res["fraction"] == 0.0 and res["runs"][0]["zeroed_layer"] == 1
    with pytest.raises(ValueError, match="layer 7 not in"):
        examples("zero_out").main(["--quick", "--layer", "7"])


def test_configs_parse():
    import yaml

    from neuralgraph.meta import MetaConfig

    names = [p.stem for p in sorted((ROOT / "examples").glob("*.yaml"))
             if "\nrule:" in p.read_text() or "\nbase:" in p.read_text()]
    assert {"iris", "iris_nopool", "iris_stable", "iris_stable_stage2", "mnist_grid", "grow_cnn",
            "grow_cnn_fashion"} <= set(names)
    for name in names:
        full = MetaConfig.from_file(ROOT / "examples" / f"{name}.yaml")
        quick = MetaConfig.from_file(ROOT / "examples" / f"{name}.yaml", quick=True)
        assert quick.train.meta_steps < full.train.meta_steps, name
        assert quick.train.init_rule is None, name  # a quick run never needs a full run's output
        # what `meta-train --print-config` prints loads back to the same config
        assert MetaConfig.from_dict(yaml.safe_load(yaml.safe_dump(full.to_dict()))) == full, name
    # continuations stated as a base + changes resolve to the settings they were run with
    a5 = MetaConfig.from_file(ROOT / "examples" / "iris_fixedpoint_a5.yaml").to_dict()
    a6 = MetaConfig.from_file(ROOT / "examples" / "iris_fixedpoint_a6.yaml").to_dict()
    changed = {(sec, k) for sec in a5 if isinstance(a5[sec], dict) for k in a5[sec] if a5[sec][k] != a6[sec][k]}
    assert changed == {("train", "init_rule"), ("train", "lr"), ("train", "seed"), ("train", "out_dir")}
    assert a6["name"] == "iris_fixedpoint_a6" and a6["train"]["lr"] == 5e-5


def test_mnist_grid_adam_one_cell(examples, tmp_path, capsys):
    """The Adam reference grid on one 10-10 cell, a fraction of an epoch's worth of checks."""
    assert examples("mnist_grid_adam").main(["--grid", "10", "--epochs", "1", "--early", "20",
                                             "--out", str(tmp_path / "adam")]) == 0
    res = json.loads((tmp_path / "adam.json").read_text())
    cell = res["cells"][0]
    assert (cell["x"], cell["y"]) == (10, 10) and res["acc"] == [[cell["epoch_acc"][0]]]
    assert 0.5 < cell["epoch_acc"][0] <= 1.0 and cell["early_acc"] < cell["epoch_acc"][0]
    assert (tmp_path / "adam.png").is_file()


def test_paper_grid_001(examples, capsys, tmp_path):
    seed = sorted((ROOT.parent / "shared" / "seeds").glob("001_*.txt"))
    assert seed, "the seed texts belong in ../shared/seeds beside the checkout (as in CI)"
    assert examples("paper_grid_001").main([str(seed[0])]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["cells"] == 100 and res["best"] == 0.97 and 0.84 < res["mean"] < 0.86
    bad = tmp_path / "bad.txt"
    bad.write_text("10\t0.5\t0.6\n")
    with pytest.raises(SystemExit, match="expected 10 heatmap rows"):
        examples("paper_grid_001").main([str(bad)])


def test_mnist_grid_probe_codes_and_layers(examples, tmp_path):
    """The first codes reproduce ``neuralgraph eval``'s cell; with a code range as wide as the layer the
    stretched code is the usual one and a random subset is a permutation, which the (permutation-
    equivariant) MLPRule grows into the same network: the same accuracy (to a prediction or two of float
    rounding; other code sets cost tens of points)."""
    from neuralgraph.cli_meta import eval_grid
    from neuralgraph.datasets.splits import load_split
    from neuralgraph.meta import load_rule

    mod = examples("mnist_grid_probe")
    assert mod.main(["codes", "--quick", "--json", str(tmp_path / "c.json")]) == 0
    quick = json.loads((tmp_path / "c.json").read_text())["results"][0]
    argv = ["codes", "--quick", "--range", "10", "--draws", "2", "--json", str(tmp_path / "p.json")]
    assert mod.main(argv) == 0
    perm = json.loads((tmp_path / "p.json").read_text())["results"][0]
    assert perm["first_codes"] == quick["first_codes"]
    for key in ("x", "y"):  # the same network up to float summation order: at most a prediction or two may flip
        assert perm[f"{key}_stretched"] == pytest.approx(perm["first_codes"], abs=0.005)
        assert len(perm[f"{key}_random_subsets"]) == 1  # --quick keeps one draw
        assert perm[f"{key}_random_subsets"][0] == pytest.approx(perm["first_codes"], abs=0.005)
    rule, cfg = load_rule(mod.GRID_RULE)
    cfg.set_fire_rate(1.0, "test")
    d = cfg.data
    x, y = load_split(d.name, d.val_fraction, d.test_fraction, d.split_seed, d.root, flatten=d.flatten).val
    cell = eval_grid(rule, cfg, [10], [10], 3, 1, (x[:500], y[:500]), progress=False)
    assert quick["first_codes"] == pytest.approx(cell[0][0], abs=1e-6)
    assert quick["x_every_other"] < quick["first_codes"] - 0.05  # this rule needs its first codes
    assert mod.main(["layers", "--quick", "--json", str(tmp_path / "l.json")]) == 0
    lay = json.loads((tmp_path / "l.json").read_text())["results"][0]
    assert lay["grown"] == pytest.approx(cell[0][0], abs=1e-6)
    assert all(0.0 <= lay[k] <= 1.0 for k in ("retrained_last_1", "retrained_last_2"))
    with pytest.raises(ValueError, match="take MLP specs"):
        mod.main(["codes", "--quick", "--archs", "cnn:m=1,k=3,h=10"])
