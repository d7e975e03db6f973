import json

import pytest
import torch

from neuralgraph.cli import main

from .helpers import tiny_config, write_config


def test_meta_train_print_config_resolves_base_and_trains_nothing(tmp_path, capsys):
    import yaml

    from neuralgraph.meta import MetaConfig

    base = write_config(tmp_path / "base.yaml", tiny_config(tmp_path / "base_run"))
    (tmp_path / "child.yaml").write_text(yaml.safe_dump(
        {"base": "base.yaml", "name": "child", "train": {"lr": 2.5e-4, "out_dir": str(tmp_path / "child_run")}}))
    argv = ["meta-train", str(tmp_path / "child.yaml"), "--print-config", "--set", "train.seed=5"]
    assert main(argv) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    want = MetaConfig.from_file(base).to_dict()
    want["name"] = "child"
    want["train"].update(lr=2.5e-4, seed=5, out_dir=str(tmp_path / "child_run"))
    assert printed == want and MetaConfig.from_dict(printed).to_dict() == want
    assert not (tmp_path / "child_run").exists()


def test_meta_train_grow_eval(tmp_path, capsys):
    out = tmp_path / "run"
    cfg = write_config(tmp_path / "c.yaml", tiny_config(out, meta_steps=2, ckpt_every=0))
    assert main(["meta-train", cfg, "--set", "train.meta_steps=3"]) == 0
    assert '"meta_steps": 3' in capsys.readouterr().out
    rule = str(out / "rule.pt")
    assert main(["grow", "--rule", rule, "--arch", "4-6-3", "--steps", "3", "--save",
                 str(tmp_path / "m.pt"), "--plot", str(tmp_path / "w.png"), "--json"]) == 0
    text = capsys.readouterr().out
    assert "4-6-3: 51 parameters" in text and (tmp_path / "w.png").stat().st_size > 0
    model = torch.load(tmp_path / "m.pt", weights_only=False)
    assert model(torch.zeros(2, 4)).shape == (2, 3)
    assert "grown in " in text
    assert main(["grow", "--rule", rule, "--arch", "4-6-3", "--steps", "5", "--every", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == [0, 2, 4, 5]
    prefix = tmp_path / "grid"
    assert main(["eval", "--rule", rule, "--grid", "3,4:2", "--steps", "2", "--out", str(prefix)]) == 0
    summary = json.loads((tmp_path / "grid.json").read_text())
    assert summary["xs"] == [3, 4] and summary["ys"] == [2] and len(summary["acc"][0]) == 2
    assert 0.0 <= summary["mean"] <= 1.0 and (tmp_path / "grid.png").is_file()
    assert summary["train_archs"] == [[3, 3]]  # 4-3-3-3 is outlined; 4-4-3 has one hidden layer
    assert "acc_per_seed" not in summary
    # several growths per cell: each one's accuracy and the seed spread; the mean is their mean
    assert main(["eval", "--rule", rule, "--grid", "3,4:2", "--steps", "2", "--samples", "3",
                 "--out", str(prefix)]) == 0
    summary = json.loads((tmp_path / "grid.json").read_text())
    per = summary["acc_per_seed"]
    assert summary["seeds"] == [1000, 1001, 1002] and len(per) == 1 and [len(a) for a in per[0]] == [3, 3]
    for ix in range(2):
        assert abs(summary["acc"][0][ix] - sum(per[0][ix]) / 3) < 1e-9
    assert summary["spread_max"] == max(max(a) - min(a) for a in per[0]) >= summary["spread_mean"] >= 0
    assert summary["fire_rate"] == 0.8  # the config's
    # --fire-rate 1.0 updates every edge: from zero weights every seed grows the same network
    assert main(["eval", "--rule", rule, "--grid", "3,4:2", "--steps", "2", "--samples", "3", "--fire-rate", "1",
                 "--out", str(prefix)]) == 0
    summary = json.loads((tmp_path / "grid.json").read_text())
    assert summary["fire_rate"] == 1.0 and summary["spread_max"] == 0.0
    with pytest.raises(SystemExit, match="--fire-rate must lie in"):
        main(["grow", "--rule", rule, "--arch", "4-6-3", "--fire-rate", "1.5"])
    # --code-tile: hidden neurons indexed modulo a reference's widths (tests/meta/test_code_tile.py)
    assert main(["grow", "--rule", rule, "--arch", "4-6-3", "--steps", "2", "--code-tile", "4-3-3"]) == 0
    assert "(hidden neurons indexed modulo 4-3-3)" in capsys.readouterr().out
    assert main(["eval", "--rule", rule, "--grid", "3,6:2", "--steps", "2", "--code-tile", "4-3-3-3",
                 "--out", str(tmp_path / "grid_m0.5")]) == 0
    assert json.loads((tmp_path / "grid_m0.5.json").read_text())["code_tile"] == "4-3-3-3"
    with pytest.raises(SystemExit, match="--code-tile cnn:q=1: .*unknown key 'q'"):
        main(["grow", "--rule", rule, "--arch", "4-6-3", "--code-tile", "cnn:q=1"])


def test_grow_missing_rule_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        main(["grow", "--rule", str(tmp_path / "none.pt"), "--arch", "4-4-3"])
