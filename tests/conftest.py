"""Shared fixtures: device parametrisation (CPU, plus CUDA when present)."""

from __future__ import annotations

import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> torch.device:
    """Run a test on every available device (``withCUDA`` style)."""
    return torch.device(request.param)
