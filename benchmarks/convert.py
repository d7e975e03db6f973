"""Conversion speed: ``to_neural_graph`` + ``to_module`` of a 2M-parameter CNN.

Prints JSON.  The reference is a naive per-parameter Python loop building the
same edge list (run on a sample and extrapolated, since it is too slow to run in
full), and the exactness of the round trip is checked in the same run.

    python benchmarks/convert.py [--json]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import PeakMemory, dump, machine, timeit  # noqa: E402

import neuralgraph as ng  # noqa: E402


def cnn_2m() -> nn.Sequential:
    """3 conv layers (64/128/256 filters, kernel 3) then dense: ~2.0M parameters."""
    return nn.Sequential(
        nn.Conv2d(1, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(128, 256, 3), nn.ReLU(), nn.Flatten(),
        nn.Linear(256 * 3 * 3, 700), nn.ReLU(), nn.Linear(700, 10)).eval()


def naive_edges(model: nn.Module, limit: int) -> float:
    """Seconds per parameter of a per-element Python loop (the slow way), on ``limit`` elements."""
    t0 = time.perf_counter()
    count = 0
    edges = []
    for p in model.parameters():
        flat = p.detach().flatten()
        shape = p.shape
        for i in range(min(limit - count, flat.numel())):
            idx = []
            r = i
            for s in reversed(shape):
                idx.append(r % s)
                r //= s
            edges.append((idx[-1], idx[-2] if len(idx) > 1 else 0, float(flat[i])))
            count += 1
        if count >= limit:
            break
    return (time.perf_counter() - t0) / max(count, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="print JSON only (default anyway)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    model = cnn_2m()
    n_params = sum(p.numel() for p in model.parameters())
    x = torch.randn(8, 1, 28, 28)
    graph = ng.to_neural_graph(model)
    module = graph.to_module()
    exact = bool(torch.equal(module(x), model(x)))
    with PeakMemory() as mem:
        t_convert, times_c = timeit(lambda: ng.to_neural_graph(model), repeat=args.repeat)
    t_module, times_m = timeit(lambda: graph.to_module(), repeat=args.repeat)
    per_param = naive_edges(model, 20000)
    dump({
        "benchmark": "convert",
        "model": "CNN 1-64-128-256 (k=3) + dense 2304-700-10",
        "parameters": n_params,
        "edges": graph.num_edges,
        "nodes": graph.num_nodes,
        "to_neural_graph_seconds": round(t_convert, 4),
        "to_module_seconds": round(t_module, 4),
        "total_seconds": round(t_convert + t_module, 4),
        "target_seconds": 2.0,
        "naive_python_loop_seconds_extrapolated": round(per_param * n_params, 2),
        "speedup_vs_naive": round(per_param * n_params / t_convert, 1),
        "roundtrip_exact": exact,
        "peak_mem_mb_to_neural_graph": round(mem.mb, 1),
        "times": {"to_neural_graph": [round(t, 4) for t in times_c],
                  "to_module": [round(t, 4) for t in times_m]},
        "machine": machine(),
    })


if __name__ == "__main__":
    main()
