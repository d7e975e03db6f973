r"""Atomic checkpoints of a meta-training run (rule, optimizer, pool, RNG, history).

Files are written to a temporary file in the same folder, flushed, fsynced and
moved into place with :func:`os.replace`, so a crash (even ``SIGKILL``) leaves
either the previous or the new checkpoint, never a torn one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List

import torch

__all__ = ["FORMAT", "CheckpointError", "atomic_save", "load_checkpoint", "config_diff"]

FORMAT = "neuralgraph-meta-checkpoint"
VERSION = 1

#: Config keys that may differ between a checkpoint and the run resuming it.
RESUMABLE_KEYS = ("train.meta_steps", "train.out_dir", "train.progress", "train.log_every",
                  "train.ckpt_every", "train.snapshot_every", "train.eval_every", "train.threads",
                  "train.grad_checkpoint", "data.root")


class CheckpointError(RuntimeError):
    """A checkpoint is corrupt, of another format, or does not match the config."""


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically (temp file + fsync + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: str | os.PathLike) -> Dict[str, Any]:
    """Load and sanity-check a checkpoint written by the meta-trainer.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is unreadable (truncated, corrupt) or is
            not a neuralgraph meta-training checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means corrupt
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable "
                              f"({type(exc).__name__}: {exc}); delete it or resume from another") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a neuralgraph meta-training checkpoint "
                              f"(format={ckpt.get('format') if isinstance(ckpt, dict) else type(ckpt)})")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {ckpt.get('version')}, "
                              f"this neuralgraph reads version {VERSION}")
    for key in ("config", "rule_state", "step"):
        if key not in ckpt:
            raise CheckpointError(f"checkpoint {path} lacks {key!r}")
    return ckpt


def _flat(d: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "kwargs":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_diff(saved: Dict[str, Any], current: Dict[str, Any]) -> List[str]:
    """Keys (``section.key``) whose values differ, ignoring :data:`RESUMABLE_KEYS`.

    A key missing from ``saved`` (a config option added after the checkpoint
    was written) counts as holding its :class:`MetaConfig` default, so old
    checkpoints still resume when the option keeps its default.
    """
    from neuralgraph.meta.config import MetaConfig

    a, b = _flat(MetaConfig().to_dict()), _flat(current)
    a.update(_flat(saved))
    return sorted(k for k in set(a) | set(b)
                  if k not in RESUMABLE_KEYS and a.get(k) != b.get(k))
