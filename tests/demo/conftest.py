"""Shared fixture: import a script from ``examples/`` as a module, run from the repository root."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def example(monkeypatch):
    """``example("grow_cnn_eval")`` -> the freshly imported ``examples/grow_cnn_eval.py``."""
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT / "examples"))

    def load(name: str):
        sys.modules.pop(name, None)
        return importlib.import_module(name)

    return load
