"""A tiny meta-training config (iris, a 4-4-3 net, a width-8 rule): seconds on a loaded CPU."""

from __future__ import annotations

from typing import Any, Dict

import yaml


def tiny_config(out_dir: str, **train: Any) -> Dict[str, Any]:
    t = {"meta_steps": 6, "steps_min": 1, "steps_max": 3, "checkpoint_chunk": 2, "out_dir": str(out_dir),
         "progress": False, "log_every": 0, "ckpt_every": 2, "seed": 0, "pool_size": 2,
         "zero_out_prob": 0.5, "lr": 3e-3}
    t.update(train)
    return {"name": "tiny", "rule": {"name": "mlp", "kwargs": {"hidden_dim": 4, "width": 8, "depth": 1}},
            "data": {"name": "iris", "batch_size": 32}, "arch": {"train": ["4-4-3", "4-3-3-3"]},
            "grow": {"hidden_dim": 4, "fire_rate": 0.8}, "train": t}


def write_config(path: Any, d: Dict[str, Any]) -> str:
    path.write_text(yaml.safe_dump(d))
    return str(path)
