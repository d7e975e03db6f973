"""``benchmarks/rule_step.py`` runs end to end on a small graph and reports what the issue asks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "rule_step.py"


def test_rule_step_benchmark_small_graph() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), "--json", "--widths", "60", "32", "10",
                          "--repeat", "1"], capture_output=True, text=True, timeout=300, check=True)
    d = json.loads(out.stdout)
    assert d["edges"] == 60 * 32 + 32 + 32 * 10 + 10
    assert d["sgemm_gflops"] == max(d["sgemm_gflops_before_after"]) > 0
    for key in ("weight_transformer", "mlp_rule"):
        r = d[key]
        for field in ("seconds_per_step", "seconds_per_step_grad", "gflops_per_s", "peak_mem_mb_grad"):
            assert r[field] > 0, (key, field)
        assert r["peak_mem_mb"] >= 0  # the fused kernel's extra memory on this tiny graph rounds to 0.0 MB
        assert abs(r["fraction_of_peak"] - r["gflops_per_s"] / d["sgemm_gflops"]) < 1e-3
    a = d["attention"]
    assert a["outputs_equal"] and a["attention_seconds"] > 0 and a["reference_attention_seconds"] > 0
    assert abs(a["attention_speedup"] - a["reference_attention_seconds"] / a["attention_seconds"]) < 0.01 * a[
        "attention_speedup"] + 0.01
    for key in ("weight_transformer", "mlp_rule"):
        r = d[key]
        if r["backend"] == "fused C kernel":  # both paths timed and their outputs compared
            assert r["fused_outputs_equal"] and r["seconds_per_step_torch"] > 0
    if a["backend"] == "fused C kernel":
        assert set(a["max_abs_diff_by_backend"]) == {"torch", "fused"}
