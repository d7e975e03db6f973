"""``neuralgraph demo``: grow an unseen MNIST CNN with the shipped rule and compare with Adam."""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="grow an unseen MNIST CNN with the shipped rule (no backprop) vs Adam")
    p.add_argument("--rule", default=None, help="rule checkpoint (default: the shipped Weight Transformer)")
    p.add_argument("--arch", default=None,
                   help="architecture to grow, e.g. cnn:m=1,k=4,h=200 (default: one never seen in training)")
    p.add_argument("--steps", type=int, default=None, help="rule steps (default: the rule's training T)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--adam-time-limit", type=float, default=60.0, help="seconds of Adam training at most")
    p.add_argument("--data-root", default=None, help="folder with the MNIST IDX files")
    p.add_argument("--json", action="store_true", help="print the measurements as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from neuralgraph.demo import format_report, run_demo

    result = run_demo(args.rule, args.arch, args.steps, args.seed, args.adam_time_limit, args.data_root)
    print(json.dumps(result, indent=2, default=float) if args.json else format_report(result))
    return 0
