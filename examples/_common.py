"""Helpers shared by the example scripts (train a quick rule, seeds, JSON output)."""

from __future__ import annotations

import json
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Optional

from neuralgraph.meta import MetaConfig, MetaTrainer


def quick_rule(config: str, out_dir: str, **overrides: Any) -> str:
    """Meta-train the config's ``quick`` setting into ``out_dir``; return the rule path."""
    sets = [f"train.out_dir={out_dir}", "train.progress=false"] + [f"{k}={v}" for k, v in overrides.items()]
    cfg = MetaConfig.from_file(config, sets, quick=True)
    MetaTrainer(cfg).fit()
    return str(Path(out_dir) / "rule.pt")


def provenance() -> Dict[str, str]:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip()
    except OSError:  # pragma: no cover
        commit = ""
    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "commit": commit,
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip()}


def write_json(obj: Dict[str, Any], path: Optional[str]) -> None:
    text = json.dumps(obj, indent=1)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    print(text)


def image_split(cfg: Any, dataset: str, split: str, size: int = 0) -> Any:
    """``(x, y)`` images of ``dataset`` (unflattened): ``split="test"``, the official test set; ``"val"``,
    the validation images the meta-trainer holds out of the training set (``data.val_fraction`` and
    ``data.split_seed`` of the rule's config ``cfg``), to choose a snapshot before test numbers.  The
    first ``size`` images (``0`` = all)."""
    from neuralgraph.datasets import mnist_tensors

    if split == "test":
        x, y = mnist_tensors(dataset, "test", flatten=False)
    elif split == "val":
        from neuralgraph.datasets.splits import load_split

        x, y = load_split(dataset, cfg.data.val_fraction, 0.0, cfg.data.split_seed, flatten=False).val
    else:
        raise ValueError(f"split must be 'test' or 'val', got {split!r}")
    return (x[:size], y[:size]) if size else (x, y)
