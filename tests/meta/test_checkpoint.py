import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from neuralgraph.meta import CheckpointError, MetaConfig, MetaTrainer, atomic_save, load_checkpoint

from .helpers import tiny_config, write_config

STEPS = 10


def _losses(hist):
    return [h["loss"] for h in hist]


def test_crash_then_resume_matches_uninterrupted_in_process(tmp_path, monkeypatch):
    want = _losses(MetaTrainer(MetaConfig.from_dict(tiny_config(tmp_path / "ref", meta_steps=STEPS))).fit())
    cfg = MetaConfig.from_dict(tiny_config(tmp_path / "run", meta_steps=STEPS, ckpt_every=3))
    tr = MetaTrainer(cfg)
    real = tr.meta_step

    def crashing():
        if tr.step == 5:
            raise KeyboardInterrupt("simulated crash")
        return real()

    monkeypatch.setattr(tr, "meta_step", crashing)
    with pytest.raises(KeyboardInterrupt):
        tr.fit()
    assert load_checkpoint(tr.ckpt_path)["step"] == 3  # steps 4-5 are lost and redone
    got = _losses(MetaTrainer(cfg).fit(resume=True))
    assert got == want


def test_rule_snapshots(tmp_path):
    """``train.snapshot_every`` exports the rule along the way; the last snapshot is the final rule, the
    first one the rule as it was then, and a run resumed with another snapshot interval is still resumable."""
    from neuralgraph.meta.trainer import load_rule

    cfg = MetaConfig.from_dict(tiny_config(tmp_path / "run", meta_steps=6, snapshot_every=3))
    tr = MetaTrainer(cfg)
    tr.fit()
    snaps = sorted((tmp_path / "run" / "snapshots").iterdir())
    assert [p.name for p in snaps] == ["rule_0000003.pt", "rule_0000006.pt"]
    final, _ = load_rule(tmp_path / "run" / "rule.pt")
    first, first_cfg = load_rule(snaps[0])
    last, _ = load_rule(snaps[1])
    assert first_cfg.train.snapshot_every == 3
    for a, b in zip(last.state_dict().values(), final.state_dict().values()):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(first.state_dict().values(), final.state_dict().values()))
    more = MetaConfig.from_dict(tiny_config(tmp_path / "run", meta_steps=8, snapshot_every=4))
    MetaTrainer(more).fit(resume=True)
    assert (tmp_path / "run" / "snapshots" / "rule_0000008.pt").is_file()


@pytest.mark.slow  # two interpreter start-ups: ~10 s idle, minutes on a loaded 2-core machine
def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    ref = MetaTrainer(MetaConfig.from_dict(tiny_config(tmp_path / "ref", meta_steps=STEPS, ckpt_every=1)))
    want = _losses(ref.fit())

    out = tmp_path / "run"
    cfg_path = write_config(tmp_path / "c.yaml", tiny_config(out, meta_steps=STEPS, ckpt_every=1))
    cmd = [sys.executable, "-m", "neuralgraph", "meta-train", cfg_path]
    env = dict(os.environ, NEURALGRAPH_META_STEP_DELAY="0.3")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = out / "checkpoint.pt"
    deadline = time.time() + 120
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        if ckpt.is_file():
            step = load_checkpoint(ckpt)["step"]
            if step >= 3:
                proc.send_signal(signal.SIGKILL)
                killed_at = step
                break
        time.sleep(0.05)
    proc.wait(timeout=30)
    assert killed_at is not None and proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    assert load_checkpoint(ckpt)["step"] < STEPS  # really interrupted mid-run

    res = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    got = _losses(load_checkpoint(ckpt)["history"])
    assert len(got) == STEPS
    assert got == pytest.approx(want, rel=1e-6, abs=1e-7)


def test_corrupt_and_foreign_checkpoints(tmp_path):
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"\x80\x02garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(bad)
    atomic_save({"hello": 1}, bad)
    with pytest.raises(CheckpointError, match="not a neuralgraph meta-training checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated_checkpoint_is_reported(tmp_path):
    tr = MetaTrainer(MetaConfig.from_dict(tiny_config(tmp_path, meta_steps=2)))
    tr.fit()
    data = tr.ckpt_path.read_bytes()
    tr.ckpt_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        MetaTrainer(MetaConfig.from_dict(tiny_config(tmp_path, meta_steps=4))).fit(resume=True)


def test_mismatched_config_is_named(tmp_path):
    MetaTrainer(MetaConfig.from_dict(tiny_config(tmp_path, meta_steps=2))).fit()
    d = tiny_config(tmp_path, meta_steps=4, lr=0.5)
    with pytest.raises(CheckpointError, match=r"different config: \['train.lr'\]"):
        MetaTrainer(MetaConfig.from_dict(d)).fit(resume=True)
    d = tiny_config(tmp_path, meta_steps=4)
    d["rule"]["kwargs"]["width"] = 16
    with pytest.raises(CheckpointError, match="rule.kwargs"):
        MetaTrainer(MetaConfig.from_dict(d)).fit(resume=True)


def test_atomic_save_leaves_no_temp_files(tmp_path):
    atomic_save({"x": torch.ones(3)}, tmp_path / "a.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]
