"""``neuralgraph demo``: grow networks the shipped rules never saw, with no backprop, against Adam.

By default two runs: the MLPRule meta-trained on iris grows an unseen iris MLP,
and the Weight Transformer meta-trained on three small kernel-5 MNIST CNNs grows
an unseen CNN with 2-4x their filters (``neuralgraph.demo.DEMO_CNN_ARCH``).
``--rule`` runs one rule instead.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="grow unseen networks with the shipped rules (no backprop) vs Adam")
    p.add_argument("--rule", default=None, help="one rule checkpoint (default: both shipped rules)")
    p.add_argument("--arch", default=None,
                   help="architecture to grow, e.g. cnn:m=1,k=4,h=200 (default: one never seen in training)")
    p.add_argument("--steps", type=int, default=None, help="rule steps (default: the rule's training T)")
    p.add_argument("--fire-rate", type=float, default=None,
                   help="fraction of edges each rule step updates (default: the rule's grow.fire_rate; "
                        "1.0 updates every edge)")
    p.add_argument("--code-tile", default=None, metavar="SPEC",
                   help="with --rule: index hidden neurons modulo this reference architecture's widths "
                        "(grow.code_tile)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--adam-time-limit", type=float, default=60.0, help="seconds of Adam training at most")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    p.add_argument("--data-root", default=None, help="folder with the MNIST IDX files")
    p.add_argument("--json", action="store_true", help="print the measurements as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from neuralgraph.demo import (
        DEMO_CNN_ARCH,
        DEMO_CNN_RULE,
        DEMO_CODE_TILE,
        SHIPPED_IRIS_RULE,
        format_report,
        run_demo,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rule:
        rules = [(args.rule, args.arch, args.code_tile)]
    else:
        if args.arch or args.code_tile:
            raise SystemExit("demo: --arch and --code-tile need --rule")
        rules = [(SHIPPED_IRIS_RULE, None, None), (DEMO_CNN_RULE, DEMO_CNN_ARCH, DEMO_CODE_TILE)]
    t0 = time.perf_counter()
    results = []
    for i, (rule, arch, tile) in enumerate(rules):
        r = run_demo(rule, arch, args.steps, args.seed, args.adam_time_limit, args.data_root, args.fire_rate,
                     tile)
        results.append(r)
        if not args.json:
            if len(rules) > 1:
                print(f"\n== {i + 1}/{len(rules)}: {r['dataset']} ==")
            print(format_report(r), flush=True)
    if args.json:
        print(json.dumps(results, indent=2, default=float))
    else:
        print(f"\ntotal demo time: {time.perf_counter() - t0:.1f} s")
    return 0
