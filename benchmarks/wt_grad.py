"""Forward + backward of the Weight Transformer's autograd path on CNN meta-training graphs.

Times ``unroll`` of 2 rule steps with autograd and no checkpointing, then ``backward``
(best of ``--repeat``), per architecture, with the rule's ``min_dense`` set to each
``--min-dense`` value (with autograd the rule caps it at ``MIN_DENSE_GRAD``).  To compare
two versions of the code, run this script with each on ``PYTHONPATH`` from a directory
outside the checkout, e.g. a ``git worktree`` of the older commit whose ``neuralgraph/``
has ``rules`` and ``datasets`` symlinked in.

    python benchmarks/wt_grad.py --json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Dict, List

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import dump, machine  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCHS = ["cnn:m=0.125,k=3,h=16", "cnn:m=0.25,k=5,h=16", "cnn:m=0.125,k=6,h=16", "cnn:m=0.5,k=3,h=32"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rule", default=os.path.join(ROOT, "neuralgraph", "checkpoints", "wt_mnist_cnn_stage2.pt"))
    ap.add_argument("--archs", nargs="+", default=ARCHS)
    ap.add_argument("--min-dense", type=int, nargs="+", default=[4096])
    ap.add_argument("--repeat", type=int, default=8)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import neuralgraph
    from neuralgraph.meta.grow import unroll
    from neuralgraph.meta.trainer import factory_from_config, load_rule

    torch.set_num_threads(1)
    rule, cfg = load_rule(args.rule)
    factory = factory_from_config(cfg)
    rows: List[Dict[str, Any]] = []
    for spec in args.archs:
        template = factory.template(spec)
        state = factory.fresh(spec)

        def step(template=template, state=state) -> None:
            w, h = unroll(template, rule, state, 2, 0.9, 1, 3, use_checkpoint=False)
            (w.square().sum() + h.sum()).backward()

        row: Dict[str, Any] = {"arch": spec, "edges": template.weight.numel()}
        for md in args.min_dense:
            rule.min_dense = md
            step()
            best = float("inf")
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                step()
                best = min(best, time.perf_counter() - t0)
            row[f"ms_min_dense_{md}"] = round(best * 1e3, 2)
        rows.append(row)
    result = {"benchmark": "wt_grad", "code": os.path.dirname(neuralgraph.__file__), "rule": args.rule,
              "machine": machine(), "rows": rows}
    if args.json:
        dump(result)
    else:
        for r in rows:
            print(r)


if __name__ == "__main__":
    main()
