"""The console script."""

from __future__ import annotations

import subprocess
import sys


def test_help_lists_commands() -> None:
    out = subprocess.run([sys.executable, "-m", "neuralgraph", "--help"], capture_output=True, text=True,
                         check=True)
    assert "usage: neuralgraph" in out.stdout
    assert "info" in out.stdout


def test_info_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "neuralgraph", "info"], capture_output=True, text=True,
                         check=True)
    assert "27090 edges (= 27090 parameters)" in out.stdout
    assert "fused CPU kernel: " in out.stdout
