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

A rule's **position code** (``hidden_dim``) may grow too, given
``hidden_map`` (:func:`neuralgraph.positional.nested_code_map`: where each old
code channel sits in the new code).  The edge state ``[w, h]`` enters the rule
through ``kv`` and ``qu`` (Weight Transformer) or the first MLP layer (``MLPRule``,
three states: the edge's and its two neighbourhood means) and leaves through
``out``; old channels move to their
new places, the new channels get zero fan-out into the rule (``kv`` / ``qu``
columns) and a zero update (``out`` rows and bias), so they stay the static
position code they start as and the widened rule computes exactly the old
update on the old channels until meta-training teaches it to read the new ones.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

__all__ = ["WIDENABLE", "widen_rule"]

#: per rule class, the hidden widths that may grow; every other hyperparameter must match
#: (except the initialisation and execution knobs in :data:`_IGNORED`)
WIDENABLE: Dict[str, Tuple[str, ...]] = {
    "MLPRule": ("width",),
    "WeightTransformer": ("ff_dim", "head_width"),
}

#: per rule class, the parameters that read (dim 1) or write (dim 0) the edge state ``[w, h]``
#: -- the dims re-indexed when ``hidden_dim`` grows.  ``MLPRule``'s first layer reads the
#: perception ``[state, fwd mean state, bwd mean state, extras]``: three edge states in a row.
_EDGE_STATE_DIMS: Dict[str, Dict[str, int]] = {
    "WeightTransformer": {"kv.weight": 1, "qu.weight": 1, "out.weight": 0, "out.bias": 0},
    "MLPRule": {"mlp.0.weight": 1, "out.weight": 0, "out.bias": 0},
}

_IGNORED = ("training", "zero_init", "workers", "native", "chunk_size", "checkpointing", "min_dense")


def _hyper(module: nn.Module) -> Dict[str, object]:
    """A rule's scalar hyperparameters (its public int / float / bool / str / tuple attributes)."""
    return {k: v for k, v in vars(module).items()
            if not k.startswith("_") and isinstance(v, (int, float, bool, str, tuple))}


def widen_rule(old: nn.Module, new: nn.Module, hidden_map: Optional[Sequence[int]] = None) -> List[str]:
    """Load the trained rule ``old`` into the wider, freshly built ``new`` in place.

    Args:
        old (nn.Module): the trained rule.
        new (nn.Module): a rule of the same class whose :data:`WIDENABLE` widths are equal
            or larger and whose other hyperparameters are equal (its own initialisation
            supplies the new units' fan-in).
        hidden_map (sequence of int, optional): for a rule whose ``hidden_dim`` grows,
            the new index of every old hidden channel
            (:func:`neuralgraph.positional.nested_code_map`).  Required exactly when
            ``hidden_dim`` differs.

    Returns:
        list of str: the names of the parameters that were widened (a tied parameter
        under its first name only).

    Raises:
        ValueError: the classes differ, a hyperparameter other than a widenable width
            differs, a width shrinks, a parameter is missing on one side, or
            ``hidden_map`` is missing, not needed or not a valid map.
    """
    cls = type(new).__name__
    if type(old) is not type(new):
        raise ValueError(f"widen: cannot load a {type(old).__name__} into a {cls}")
    if cls not in WIDENABLE:
        raise ValueError(f"widen: {cls} has no widenable widths (known: {sorted(WIDENABLE)})")
    h_old, h_new = _hyper(old), _hyper(new)
    state_dims = _EDGE_STATE_DIMS.get(cls, {})
    widenable = WIDENABLE[cls] + (("hidden_dim",) if state_dims else ())
    fixed = sorted(k for k in set(h_old) | set(h_new)
                   if k not in widenable and k not in _IGNORED and h_old.get(k) != h_new.get(k))
    if fixed:
        raise ValueError(f"widen: only {cls} {', '.join(widenable)} may change; "
                         + ", ".join(f"{k} {h_old.get(k)!r} -> {h_new.get(k)!r}" for k in fixed))
    for k in widenable:
        if h_new[k] < h_old[k]:  # type: ignore[operator]
            raise ValueError(f"widen: {cls}.{k} cannot shrink ({h_old[k]} -> {h_new[k]})")
    # index of every old edge-state entry [w, h_0 .. h_{H-1}] in the new one
    state_index: Optional[torch.Tensor] = None
    if state_dims and h_old["hidden_dim"] != h_new["hidden_dim"]:
        if hidden_map is None:
            raise ValueError(f"widen: {cls}.hidden_dim {h_old['hidden_dim']} -> {h_new['hidden_dim']} needs "
                             f"hidden_map (neuralgraph.positional.nested_code_map)")
        hm = [int(i) for i in hidden_map]
        if len(hm) != h_old["hidden_dim"] or len(set(hm)) != len(hm) or \
                any(not 0 <= i < h_new["hidden_dim"] for i in hm):  # type: ignore[operator]
            raise ValueError(f"widen: hidden_map must give {h_old['hidden_dim']} distinct channels in "
                             f"[0, {h_new['hidden_dim']}), got {hm}")
        state_index = torch.tensor([0] + [1 + i for i in hm])
        perception_index = _perception_index(old, new, state_index)
    elif hidden_map is not None and list(hidden_map) != list(range(int(h_old.get("hidden_dim", -1)))):
        raise ValueError(f"widen: hidden_map given but {cls}.hidden_dim does not grow")
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
            if state_index is not None and name in state_dims:
                index = perception_index if name == "mlp.0.weight" else state_index
                _load_reindexed(t, o, state_dims[name], index, f"{cls}.{name}")
                widened.append(name)
                continue
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


def _perception_index(old: nn.Module, new: nn.Module, state_index: torch.Tensor) -> torch.Tensor:
    """Index of each entry of ``old``'s first-layer input in ``new``'s: for ``MLPRule`` three
    re-indexed edge states, then the data-conditioning extras; for other rules the state itself."""
    if type(new).__name__ != "MLPRule":
        return state_index
    if old.depth < 1:  # type: ignore[operator]
        raise ValueError("widen: a depth-0 MLPRule (one Linear from perception to update) cannot "
                         "widen its position code")
    d_old, d_new = 1 + old.hidden_dim, 1 + new.hidden_dim  # type: ignore[operator]
    n_in = old.mlp[0].in_features  # type: ignore[index]
    parts = [b * d_new + state_index for b in range(3)]
    parts.append(3 * d_new + torch.arange(n_in - 3 * d_old))
    return torch.cat(parts)


def _load_reindexed(t: torch.Tensor, o: torch.Tensor, dim: int, index: torch.Tensor, where: str) -> None:
    """Load ``o`` into ``t`` with ``dim`` (the edge state ``[w, h]``) re-indexed by ``index``.

    New edge-state entries get zero fan-in from the rule (``dim == 0``: ``out`` rows and bias;
    the new channels are never updated) or zero fan-out into it (``dim == 1``: ``kv`` / ``qu``
    columns).  The other dim may grow as a hidden width (leading block; new units keep
    ``t``'s fresh init, old units get zero weight from new inputs)."""
    if o.dim() not in (1, 2) or o.size(dim) != index.numel() or t.dim() != o.dim():
        raise ValueError(f"widen: {where} {tuple(o.shape)} -> {tuple(t.shape)} does not match "
                         f"an edge state of {index.numel()} entries")
    if o.dim() == 1:
        t.zero_()
        t[index] = o
        return
    other = 1 - dim
    if o.size(other) > t.size(other):
        raise ValueError(f"widen: {where} cannot go from {tuple(o.shape)} to {tuple(t.shape)}")
    keep = torch.arange(o.size(other))
    if dim == 0:  # out: rows are edge-state entries, columns the head's hidden units
        t.zero_()  # new entries: no update; old entries: nothing from new head units
        t[index.unsqueeze(1), keep.unsqueeze(0)] = o
    else:  # kv / qu: columns are edge-state entries, rows this layer's units
        t[keep] = 0.0  # old units read nothing new; new units (if any) keep their fresh fan-in
        t[keep.unsqueeze(1), index.unsqueeze(0)] = o
