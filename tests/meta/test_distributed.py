import shutil
import subprocess

import pytest

from neuralgraph.meta import load_checkpoint

from .helpers import tiny_config, write_config


@pytest.mark.slow  # starts torchrun + 2 workers
def test_torchrun_two_processes_gloo(tmp_path):
    if shutil.which("torchrun") is None:
        pytest.skip("torchrun not on PATH")
    out = tmp_path / "ddp"
    cfg = write_config(tmp_path / "c.yaml", tiny_config(out, meta_steps=3, ckpt_every=0))
    res = subprocess.run(["torchrun", "--standalone", "--nproc_per_node", "2", "-m", "neuralgraph",
                          "meta-train", cfg], capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["world_size"] == 2 and ckpt["step"] == 3
    assert len(ckpt["per_rank"]) == 2
    # ranks grow different architectures: each rank's pool holds only its own
    keys = [set(r["pool"]["slots"]) for r in ckpt["per_rank"]]
    assert keys[0] == {"4-4-3"} and keys[1] == {"4-3-3-3"}
    assert (out / "rule.pt").is_file() and '"world_size": 2' in res.stdout
