"""Grown-vs-trained time to accuracy for several CNN architectures (JSON).

For each architecture the shipped rule grows the network (no backprop); Adam
then trains the same architecture from a fresh initialisation until it matches
the grown network's accuracy on 2,000 held-out training images (or a time
limit).  The ratio is growing time / Adam time, both measured in this run.

    python benchmarks/grow_vs_adam.py --json [--archs cnn:m=1,k=4,h=200 ...]
    python benchmarks/grow_vs_adam.py --json --rule neuralgraph/checkpoints/wt_mnist_cnn_k5s3.pt \
        --code-tile cnn:m=0.25,k=5,h=100 --archs cnn:m=2,k=5,h=400   # hidden neurons indexed modulo a reference
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import dump, machine  # noqa: E402

from neuralgraph.demo import run_demo  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="print JSON (default anyway)")
    parser.add_argument("--rule", default=None)
    parser.add_argument("--archs", nargs="+",
                        default=["cnn:m=0.5,k=4,h=100", "cnn:m=1,k=4,h=200", "cnn:m=1,k=3,h=100"])
    parser.add_argument("--adam-time-limit", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fire-rate", type=float, default=None,
                        help="fraction of edges each rule step updates (default: the rule's grow.fire_rate)")
    parser.add_argument("--code-tile", default=None, metavar="SPEC",
                        help="index hidden neurons modulo this reference architecture's widths (grow.code_tile)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for arch in args.archs:
        r = run_demo(args.rule, arch, adam_time_limit=args.adam_time_limit, fire_rate=args.fire_rate,
                     code_tile=args.code_tile)
        rows.append({"arch": arch, "parameters": r["parameters"], "grow_seconds": round(r["grow_seconds"], 3),
                     "grown_test_accuracy": r["grown_test_accuracy"],
                     "to_module_test_accuracy": r["to_module_test_accuracy"],
                     "adam_seconds": round(r["adam"]["seconds"], 3), "adam_steps": r["adam"]["steps"],
                     "adam_reached": r["adam"]["reached"], "adam_test_accuracy": r["adam"]["test_accuracy"],
                     "grow_over_adam": None if r["grow_vs_adam_time_ratio"] is None
                     else round(r["grow_vs_adam_time_ratio"], 3)})
    dump({"benchmark": "grow_vs_adam", "rule": args.rule, "fire_rate": args.fire_rate,
          "code_tile": args.code_tile, "rows": rows, "machine": machine()})


if __name__ == "__main__":
    main()
