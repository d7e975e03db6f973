"""Function-preserving widening of a trained rule (Net2Net-style, with zero fan-out).

A rule meta-trained with a small MLP (``MLPRule.width``) or small feed-forward
and head layers (``WeightTransformer.ff_dim`` / ``head_width``) can be continued
with wider layers without starting over: :func:`widen_rule` copies every
old parameter into the leading block of the new one, gives the new hidden units
fresh random fan-in (the new module's own initialisation) and **zero** fan-out.
The widened rule therefore computes exactly the old update at the start, while
gradients reach the new units' fan-out weights at once (their activations are
non-zero), so meta-training can use the extra capacity.

For a chain ``Linear -> activation -> Linear`` the rule is, per ``nn.Linear``
weight ``W`` of new shape ``(O', I')`` and old shape ``(O, I)``::

    W[:O, :I] = W_old      # old units, old inputs
    W[:O, I:] = 0          # old units ignore the new ones
    W[O:, :]  = init       # new units (fresh fan-in, any inputs)

and ``b[:O] = b_old``.  Only hidden widths may grow: a tensor whose *input*
grows must feed old units only through the zero block, which holds for a plain
MLP chain of element-wise activations (``MLPRule.mlp``, ``WeightTransformer.ff``
and ``.head``) but not for layers whose outputs are normalised together (a
``LayerNorm`` width is refused).
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from torch import nn

__all__ = ["WIDENABLE", "widen_rule"]

#: per rule class, the hidden widths that may grow; every other hyperparameter must match
#: (except the initialisation and execution knobs in :data:`_IGNORED`)
WIDENABLE: Dict[str, Tuple[str, ...]] = {
    "MLPRule": ("width",),
    "WeightTransformer": ("ff_dim", "head_width"),
}

_IGNORED = ("training", "zero_init", "workers", "native", "chunk_size", "checkpointing", "min_dense")


def _hyper(module: nn.Module) -> Dict[str, object]:
    """A rule's scalar hyperparameters (its public int / float / bool / str / tuple attributes)."""
    return {k: v for k, v in vars(module).items()
            if not k.startswith("_") and isinstance(v, (int, float, bool, str, tuple))}


def widen_rule(old: nn.Module, new: nn.Module) -> List[str]:
    """Load the trained rule ``old`` into the wider, freshly built ``new`` in place.

    Args:
        old (nn.Module): the trained rule.
        new (nn.Module): a rule of the same class whose :data:`WIDENABLE` widths are equal
            or larger and whose other hyperparameters are equal (its own initialisation
            supplies the new units' fan-in).

    Returns:
        list of str: the names of the parameters that were widened (a tied parameter
        under its first name only).

    Raises:
        ValueError: the classes differ, a hyperparameter other than a widenable width
            differs, a width shrinks, or a parameter is missing on one side.
    """
    cls = type(new).__name__
    if type(old) is not type(new):
        raise ValueError(f"widen: cannot load a {type(old).__name__} into a {cls}")
    if cls not in WIDENABLE:
        raise ValueError(f"widen: {cls} has no widenable widths (known: {sorted(WIDENABLE)})")
    h_old, h_new = _hyper(old), _hyper(new)
    fixed = sorted(k for k in set(h_old) | set(h_new)
                   if k not in WIDENABLE[cls] and k not in _IGNORED and h_old.get(k) != h_new.get(k))
    if fixed:
        raise ValueError(f"widen: only {cls} {', '.join(WIDENABLE[cls])} may change; "
                         + ", ".join(f"{k} {h_old.get(k)!r} -> {h_new.get(k)!r}" for k in fixed))
    for k in WIDENABLE[cls]:
        if h_new[k] < h_old[k]:  # type: ignore[operator]
            raise ValueError(f"widen: {cls}.{k} cannot shrink ({h_old[k]} -> {h_new[k]})")
    old_state = old.state_dict()
    target = new.state_dict()
    missing = sorted(set(target) ^ set(old_state))
    if missing:
        raise ValueError(f"widen: parameter names differ between the old and the new "
                         f"{cls}: {missing}")
    norm_names = {f"{n}.{p}" for n, m in new.named_modules()
                  if isinstance(m, (nn.LayerNorm, nn.BatchNorm1d, nn.GroupNorm)) for p in ("weight", "bias")}
    widened = []
    seen = set()  # tied parameters (e.g. MLPRule.out is mlp[-1]) appear under two names: copy once
    with torch.no_grad():
        for name, t in target.items():
            if t.numel() and t.data_ptr() in seen:
                continue
            seen.add(t.data_ptr())
            o = old_state[name]
            if o.shape == t.shape:
                t.copy_(o)
                continue
            if o.dim() != t.dim() or any(a > b for a, b in zip(o.shape, t.shape)):
                raise ValueError(f"widen: {cls}.{name} cannot go from "
                                 f"{tuple(o.shape)} to {tuple(t.shape)} (only growth is allowed)")
            if name in norm_names:
                raise ValueError(f"widen: {cls}.{name} is a normalisation parameter; "
                                 f"widening {tuple(o.shape)} -> {tuple(t.shape)} would change its statistics")
            if o.dim() == 1:  # bias: old units keep theirs, new units keep their fresh init
                t[: o.size(0)] = o
            elif o.dim() == 2:  # Linear weight (out, in)
                rows, cols = o.shape
                t[:rows, :cols] = o
                t[:rows, cols:] = 0.0
            else:
                raise ValueError(f"widen: {cls}.{name} has {o.dim()} dims; only Linear "
                                 f"weights and biases can widen")
            widened.append(name)
    return widened
