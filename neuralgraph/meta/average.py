r"""Average the parameters of several trained rules ("model soup", stochastic weight averaging).

Rules continued from one parent (snapshots of a run, or fine-tunes with other seeds) stay in one basin
of the meta-loss, and their parameter mean often grows unseen architectures better than any of them.
:func:`average_rules` forms the (weighted) mean

.. math::  \theta = \sum_i \alpha_i \theta_i, \qquad \alpha_i \ge 0,\ \sum_i \alpha_i = 1,

of every floating-point tensor of the rules' ``state_dict``; integer buffers must be equal.  The rules
must be the same rule (class and hyperparameters) reading the same inputs: the ``rule`` and ``grow``
sections of their configs (except the growth-time knobs ``grow.fire_rate`` and ``grow.code_tile``) and,
for a data-conditioned rule, the dataset of its probe batch must agree.  A mismatch is an error that
names the file and the differing config keys.  The result is a rule export (``neuralgraph-rule``) that
``neuralgraph grow`` / ``eval`` and :func:`load_rule` read, with the first rule's config and
the sources listed under ``"averaged_from"``.

::

    neuralgraph average-rules soup.pt runs/a/rule.pt runs/b/rule.pt runs/c/rule.pt
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

from neuralgraph.meta.checkpoint import CheckpointError, atomic_save, config_diff
from neuralgraph.meta.trainer import RULE_FORMAT, load_rule

__all__ = ["average_rules", "save_average"]


#: ``grow`` entries that are growth-time knobs, not inputs of the rule: they may differ (the average
#: keeps the first rule's)
_FREE = ("grow.fire_rate", "grow.code_tile")


def _inputs_differ(ref: Dict[str, Any], other: Dict[str, Any]) -> List[str]:
    """The config keys (``section.key``) two rules must share to be averaged and do not."""
    conditioned = ref["rule"].get("kwargs", {}).get("data_conditioned")
    return [k for k in config_diff(ref, other)
            if (k.startswith(("rule.", "grow.")) and k not in _FREE) or (conditioned and k == "data.name")]


def average_rules(paths: Sequence[str | Path], weights: Optional[Sequence[float]] = None) -> Dict[str, Any]:
    """The parameter mean of the rules in ``paths``, as a rule export dict (``torch.save`` it).

    Args:
        paths: two or more rule files (``rule.pt`` exports, snapshots or trainer checkpoints).
        weights: one non-negative weight per file, not all zero (normalised to sum 1);
            default equal weights.

    Returns:
        ``{"format": "neuralgraph-rule", "config", "rule_class", "rule_state", "averaged_from"}``;
        ``averaged_from`` lists ``{"path", "weight"}`` per source.

    Raises:
        ValueError: fewer than two files, or bad ``weights``.
        CheckpointError: a file is unreadable, or its rule differs from the first's (the message
            names the file and the config keys or tensors that differ).
    """
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise ValueError(f"average_rules needs at least two rule files, got {len(paths)}")
    if weights is None:
        weights = [1.0] * len(paths)
    if len(weights) != len(paths):
        raise ValueError(f"average_rules: {len(weights)} weights for {len(paths)} rule files")
    w = torch.tensor([float(v) for v in weights], dtype=torch.float64)
    if not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"average_rules: weights must be finite, >= 0 and not all zero, got {list(weights)}")
    w = w / w.sum()

    rules = [load_rule(p) for p in paths]
    ref_rule, ref_cfg = rules[0]
    ref_dict = ref_cfg.to_dict()
    ref_state = ref_rule.state_dict()
    total: Dict[str, torch.Tensor] = {}
    for path, alpha, (rule, cfg) in zip(paths, w.tolist(), rules):
        diff = _inputs_differ(ref_dict, cfg.to_dict())
        if diff:
            raise CheckpointError(f"{path}: its rule differs from {paths[0]}'s in {', '.join(diff)}; "
                                  "only rules of one kind reading the same inputs can be averaged")
        for name, t in rule.state_dict().items():
            r = ref_state[name]
            if t.is_floating_point():
                total[name] = total.get(name, torch.zeros_like(r, dtype=torch.float64)) + alpha * t.double()
            elif not torch.equal(t, r):
                raise CheckpointError(f"{path}: integer buffer {name!r} differs from {paths[0]}'s; "
                                      "it cannot be averaged")
    state = {name: (total[name].to(t.dtype) if name in total else t.clone()) for name, t in ref_state.items()}
    return {"format": RULE_FORMAT, "config": ref_cfg.to_dict(), "rule_class": type(ref_rule).__name__,
            "rule_state": state,
            "averaged_from": [{"path": str(p), "weight": a} for p, a in zip(paths, w.tolist())]}


def save_average(out: str | Path, paths: Sequence[str | Path],
                 weights: Optional[Sequence[float]] = None) -> List[Dict[str, Any]]:
    """:func:`average_rules` written atomically to ``out``; returns its ``averaged_from``."""
    avg = average_rules(paths, weights)
    atomic_save(avg, out)
    return avg["averaged_from"]
