"""Batched WANN evaluation speed: networks x weight values per second, batched vs a per-network loop.

A population of ``P`` random WANN topologies for MNIST 16x16 (256 inputs,
10 outputs, ~5% of input->output edges, then ``--mutations`` random mutations
each, so they carry hidden nodes) is evaluated on a batch of ``B`` inputs for
the six shared weight values:

* ``batched``: one :func:`neuralgraph.wann.evaluate` call per chunk of networks
  (compile + run, as the search does every generation);
* ``loop_module``: a Python loop over networks and weight values, each a
  ``graph.to_module(w)`` forward (the straightforward per-network torch code;
  module construction excluded);
* ``loop_evaluator``: a loop over networks, each one evaluator call batched over
  the six weights only.

All outputs are checked against each other in the same run.  Prints JSON.

    python benchmarks/wann_eval.py [--pop 256] [--batch 1000] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import dump, machine, timeit  # noqa: E402

from neuralgraph.wann import DEFAULT_WEIGHTS, WANNGraph, compile_population, evaluate, mutate, run_plan  # noqa: E402


def population(pop: int, mutations: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    graphs = []
    for _ in range(pop):
        g = WANNGraph.minimal(256, 10, 0.05, rng=rng)
        for _ in range(mutations):
            g = mutate(g, rng)
        graphs.append(g)
    return graphs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pop", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--mutations", type=int, default=60)
    parser.add_argument("--chunk", type=int, default=96)
    parser.add_argument("--loop-sample", type=int, default=32, help="networks timed in the loops")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    graphs = population(args.pop, args.mutations)
    x = torch.rand(args.batch, 256, device=dev)
    w = torch.tensor(DEFAULT_WEIGHTS, device=dev)
    n_w = w.numel()

    def batched() -> list:
        outs = []
        for i in range(0, len(graphs), args.chunk):
            outs.append(run_plan(compile_population(graphs[i:i + args.chunk], device=dev), x, w, layout="POWB"))
        sync()
        return outs

    sample = graphs[:args.loop_sample]
    modules = [[g.to_module(float(v)).to(dev) for v in DEFAULT_WEIGHTS] for g in sample]

    def loop_module() -> list:
        with torch.no_grad():
            outs = [[m(x) for m in ms] for ms in modules]
        sync()
        return outs

    def loop_evaluator() -> list:
        outs = [evaluate([g], x, w) for g in sample]
        sync()
        return outs

    with torch.no_grad():
        t_b, _ = timeit(batched, repeat=args.repeat)
        t_m, _ = timeit(loop_module, repeat=args.repeat)
        t_e, _ = timeit(loop_evaluator, repeat=args.repeat)
        # agreement in the same run
        ref = torch.cat(batched())[:len(sample)].permute(0, 2, 3, 1)  # (P, W, B, O)
        lm = torch.stack([torch.stack(o) for o in loop_module()])
        le = torch.cat(loop_evaluator())
        err = max(float((ref - lm).abs().max()), float((ref - le).abs().max()))
    rate_b = args.pop * n_w / t_b
    rate_m = len(sample) * n_w / t_m
    rate_e = len(sample) * n_w / t_e
    conns = [g.num_connections for g in graphs]
    hidden = [g.num_hidden for g in graphs]
    dump({
        "benchmark": "wann_eval",
        "device": str(dev),
        "population": args.pop, "batch": args.batch, "weights": n_w, "chunk": args.chunk,
        "mean_connections": float(np.mean(conns)), "mean_hidden": float(np.mean(hidden)),
        "batched_s": round(t_b, 4),
        "batched_nets_x_weights_per_s": round(rate_b, 1),
        "loop_module_nets_x_weights_per_s": round(rate_m, 1),
        "loop_evaluator_nets_x_weights_per_s": round(rate_e, 1),
        "speedup_vs_loop_module": round(rate_b / rate_m, 2),
        "speedup_vs_loop_evaluator": round(rate_b / rate_e, 2),
        "loop_sample": len(sample),
        "max_abs_diff": err,
        "machine": machine(),
    })


if __name__ == "__main__":
    main()
