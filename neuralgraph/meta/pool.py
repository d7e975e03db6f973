r"""Sample pool (Mordvintsev et al., Growing NCA; Barot 2024): grown states reused as starting states."""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor

__all__ = ["SamplePool"]

State = Tuple[Tensor, Tensor]


class SamplePool:
    """Per-architecture slots of grown ``(weight, hidden)`` states.

    Each draw returns a stored state with probability ``1 - fresh_prob`` (if
    any is stored) or ``None`` (start fresh); :meth:`put` writes the grown state
    back into the slot it came from, or into a random slot for fresh starts.

    Args:
        size (int): slots per architecture (``0`` disables pooling).
        fresh_prob (float): probability of a fresh start. (default: ``0.25``)
    """

    def __init__(self, size: int, fresh_prob: float = 0.25) -> None:
        if size < 0 or not 0.0 <= fresh_prob <= 1.0:
            raise ValueError(f"bad pool size {size} / fresh_prob {fresh_prob}")
        self.size = size
        self.fresh_prob = fresh_prob
        self.slots: Dict[str, List[Optional[State]]] = {}

    def _slots(self, key: str) -> List[Optional[State]]:
        return self.slots.setdefault(key, [None] * self.size)

    def draw(self, key: str, generator: torch.Generator) -> Tuple[Optional[State], int]:
        """``(state or None, slot index)``; the slot is where :meth:`put` will write."""
        if self.size == 0:
            return None, -1
        slots = self._slots(key)
        u = float(torch.rand((), generator=generator))
        slot = int(torch.randint(self.size, (1,), generator=generator))
        filled = [i for i, s in enumerate(slots) if s is not None]
        if filled and u >= self.fresh_prob:
            i = filled[slot % len(filled)]
            st = slots[i]
            assert st is not None
            return (st[0].clone(), st[1].clone()), i
        return None, slot

    def put(self, key: str, slot: int, state: State) -> None:
        if self.size == 0 or slot < 0:
            return
        w, h = state
        if not (torch.isfinite(w).all() and torch.isfinite(h).all()):
            self._slots(key)[slot] = None  # never keep a diverged state
            return
        self._slots(key)[slot] = (w.detach().clone(), h.detach().clone())

    def state_dict(self) -> dict:
        return {"size": self.size, "fresh_prob": self.fresh_prob, "slots": self.slots}

    def load_state_dict(self, d: dict) -> None:
        if d["size"] != self.size:
            raise ValueError(f"checkpoint pool has {d['size']} slots, config asks for {self.size}")
        self.slots = {k: list(v) for k, v in d["slots"].items()}

    def __repr__(self) -> str:
        n = sum(s is not None for v in self.slots.values() for s in v)
        return f"{self.__class__.__name__}(size={self.size}, fresh_prob={self.fresh_prob}, stored={n})"
