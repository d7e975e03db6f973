"""Exceptions raised by neuralgraph."""

from __future__ import annotations

__all__ = ["NeuralGraphError", "UnsupportedModuleError", "WeightShapeError"]


class NeuralGraphError(ValueError):
    """Base class of every error neuralgraph raises on bad input."""


class UnsupportedModuleError(NeuralGraphError):
    """A module (or traced operation) cannot be represented as a neural graph.

    The message names the module's path inside the model (``"<root>"`` for the
    model itself) and its type.
    """

    def __init__(self, path: str, what: str, reason: str = "") -> None:
        self.path = path or "<root>"
        self.what = what
        msg = f"cannot convert {self.path!r} ({what}) to a neural graph"
        if reason:
            msg += f": {reason}"
        super().__init__(msg)


class WeightShapeError(NeuralGraphError):
    """A weight vector or tensor does not fit the graph's parameter layout."""
