r"""The WANN node activations (Gaier & Ha, 2019), as codes into :data:`WANN_ACTIVATIONS`.

Definitions follow the reference implementation (``WANNRelease/prettyNEAT``):
``step`` is the unsigned step :math:`[x > 0]`, ``sin``/``cos`` take
:math:`\pi x`, ``gaussian`` is :math:`e^{-x^2/2}`, ``sigmoid`` is
:math:`(\tanh(x/2) + 1)/2` and ``inverse`` is the negation :math:`-x`.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Tuple

import torch
from torch import Tensor

__all__ = ["WANN_ACTIVATIONS", "ACT_FUNCS", "apply_activation", "activation_code"]

#: Node activation codes (``WANNGraph.node_act``).
WANN_ACTIVATIONS: Tuple[str, ...] = (
    "linear", "step", "sin", "cos", "gaussian", "tanh", "sigmoid", "inverse", "abs", "relu",
)


def _step(x: Tensor) -> Tensor:
    return (x > 0).to(x.dtype)


#: ``name -> elementwise function``.
ACT_FUNCS: Dict[str, Callable[[Tensor], Tensor]] = {
    "linear": lambda x: x,
    "step": _step,
    "sin": lambda x: torch.sin(math.pi * x),
    "cos": lambda x: torch.cos(math.pi * x),
    "gaussian": lambda x: torch.exp(-0.5 * x * x),
    "tanh": torch.tanh,
    "sigmoid": lambda x: (torch.tanh(0.5 * x) + 1.0) * 0.5,
    "inverse": lambda x: -x,
    "abs": torch.abs,
    "relu": torch.relu,
}

_BY_CODE = tuple(ACT_FUNCS[name] for name in WANN_ACTIVATIONS)


def activation_code(name: str) -> int:
    """Code of an activation name; raises ``ValueError`` listing the valid names."""
    try:
        return WANN_ACTIVATIONS.index(name)
    except ValueError:
        raise ValueError(f"unknown WANN activation {name!r}; choose from {WANN_ACTIVATIONS}") from None


def apply_activation(code: int, x: Tensor) -> Tensor:
    """Apply activation ``code`` elementwise (out of place)."""
    if not 0 <= int(code) < len(_BY_CODE):
        raise ValueError(f"activation code must lie in [0, {len(_BY_CODE)}), got {code}")
    return _BY_CODE[int(code)](x)
