import json

import numpy as np
import pytest
import torch

from neuralgraph.cli import main as cli_main
from neuralgraph.wann import MNISTTask, WANNConfig, WANNSearch, load_champion


def _task():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(160, 256, generator=gen)
    y = (x[:, :128].sum(1) > x[:, 128:].sum(1)).long() * 3  # a learnable 2-class problem in 10 outputs
    return MNISTTask(batch_size=64, val_size=32, chunk=5, data=(x, y))


def _cfg(out_dir, **kw):
    return WANNConfig(pop_size=12, generations=6, tournament_size=4, p_init_enable=0.1, seed=3,
                      out_dir=str(out_dir), checkpoint_every=2, hall_of_fame=4, device="cpu", **kw)


def _same_population(a, b):
    assert len(a) == len(b)
    for g, h in zip(a, b):
        for key in ("edge_index", "edge_enabled", "node_act", "node_role"):
            assert torch.equal(getattr(g, key), getattr(h, key))


def test_resume_equals_uninterrupted(tmp_path):
    task = _task()
    full = WANNSearch(_cfg(tmp_path / "a"), task=task)
    full.run(generations=5, progress=False)
    part = WANNSearch(_cfg(tmp_path / "b"), task=task)
    part.run(generations=3, progress=False)
    assert (tmp_path / "b" / "checkpoint.pkl").exists()
    assert not (tmp_path / "b" / "checkpoint.pkl.tmp").exists()
    resumed = WANNSearch(_cfg(tmp_path / "b"), task=task)
    assert resumed.resume() and resumed.generation == 3
    resumed.run(generations=5, progress=False)
    assert [h["mean_fit_best"] for h in resumed.history] == [h["mean_fit_best"] for h in full.history]
    _same_population(resumed.population, full.population)
    assert resumed.rng.random() == full.rng.random()
    other = WANNSearch(_cfg(tmp_path / "b", p_moo=0.3), task=task)
    with pytest.warns(UserWarning, match=r"different settings for \['p_moo'\]"):
        other.resume()


def test_search_improves_and_champion(tmp_path):
    search = WANNSearch(_cfg(tmp_path, p_moo=0.5), task=_task())
    hist = search.run(generations=6, progress=False)
    assert len(hist) == 6 and all(np.isfinite(h["mean_fit_best"]) for h in hist)
    assert max(h["mean_fit_best"] for h in hist[3:]) >= hist[0]["mean_fit_best"] - 1e-9
    champ, score = search.champion(top=4)
    assert champ.validate() and 0.0 <= score <= 1.0
    path = search.save_champion(champ, score)
    g, meta = load_champion(path)
    assert torch.equal(g.edge_index, champ.edge_index) and meta["score"] == score


def test_config_files_and_errors(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("task: cartpole\npop_size: 8\nweights: [1, 2]\n")
    cfg = WANNConfig.from_file(str(p))
    assert cfg.pop_size == 8 and cfg.weights == (1.0, 2.0)
    (tmp_path / "bad.json").write_text(json.dumps({"pop_sise": 3}))
    with pytest.raises(ValueError, match="unknown keys \\['pop_sise'\\]"):
        WANNConfig.from_file(str(tmp_path / "bad.json"))
    with pytest.raises(ValueError, match="pop_size must be >= 2"):
        WANNConfig(pop_size=1)
    # the meta-training configs' scalar checks: YAML 1.1 loads "2.0e-1" as a string
    (tmp_path / "e.yaml").write_text("task: cartpole\np_moo: 2.0e-1\n")
    assert WANNConfig.from_file(str(tmp_path / "e.yaml")).p_moo == 0.2
    with pytest.raises(ValueError, match="WANNConfig.pop_size must be an integer"):
        WANNConfig.from_dict({"pop_size": 8.5})


def test_cli_cartpole_and_resume(tmp_path, capsys):
    cfg = tmp_path / "cp.yaml"
    cfg.write_text(f"task: cartpole\ntask_args: {{episodes: 1, steps: 15, val_episodes: 1}}\npop_size: 6\n"
                   f"generations: 2\ntournament_size: 2\nhall_of_fame: 2\ndevice: cpu\nout_dir: {tmp_path}/run\n")
    assert cli_main(["wann", str(cfg), "--no-progress", "--trials", "3"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["generations"] == 2 and (tmp_path / "run" / "champion.pt").exists()
    assert set(out["control"]) >= {"random_weight_mean", "tuned_weight_mean"} and len(out["val_score_per_weight"]) == 6
    assert cli_main(["wann", str(cfg), "--resume", "--generations", "3", "--no-progress", "--trials", "0"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("resumed") and json.loads(lines[-1])["generations"] == 3
