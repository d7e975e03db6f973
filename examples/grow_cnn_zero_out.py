"""Zero-out recovery of grown CNNs: grow, wipe one layer plus a share of the other weights, regrow.

For each architecture and each parametrised layer: grow ``--steps`` rule steps from the fresh state
(no backprop), set that layer's weights and ``--fraction`` of all other weights to zero (hidden states
are kept), then apply ``--regrow`` more rule steps.  Reports MNIST test accuracy grown / damaged /
regrown, as JSON (``--split val``: on the meta-trainer's validation images instead, to choose a
snapshot).  ``--fire-rate`` sets the share of edges each rule step updates (default: the rule's
training fire rate); the kernel-5 rules are trained and evaluated with 1.0.

    python examples/grow_cnn_zero_out.py --archs cnn:m=0.5,k=3,h=100 --out docs/figures/grow_cnn_zero_out.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch


def run(rule_path: Optional[str], archs: Sequence[str], steps: Optional[int], regrow: Optional[int],
        fraction: float = 0.3, test_size: int = 2000, seed: int = 0,
        fire_rate: Optional[float] = None, split: str = "test") -> Dict[str, Any]:
    from _common import image_split

    from neuralgraph.demo import SHIPPED_RULE
    from neuralgraph.meta.grow import accuracy, unroll
    from neuralgraph.meta.perturb import zero_out
    from neuralgraph.meta.trainer import factory_from_config, load_rule

    rule, cfg = load_rule(rule_path or SHIPPED_RULE)
    cfg.set_fire_rate(fire_rate)
    factory = factory_from_config(cfg)
    n = steps if steps is not None else cfg.train.steps_max
    r = regrow if regrow is not None else n
    x, y = image_split(cfg, cfg.data.name, split, test_size)
    rows: List[Dict[str, Any]] = []
    with torch.no_grad():
        for spec in archs:
            tmpl = factory.template(spec)

            def acc(w: torch.Tensor, tmpl: Any = tmpl, spec: str = spec) -> float:
                return accuracy(tmpl, factory.network_weight(spec, w), x, y)[0]

            w, h = unroll(tmpl, rule, factory.fresh(spec, torch.Generator().manual_seed(seed)), n,
                          cfg.grow.fire_rate, seed, use_checkpoint=False)
            grown = acc(w)
            layer = tmpl.edge_pos[:, 0]
            for lay in torch.unique(layer).tolist():
                gen = torch.Generator().manual_seed(seed + 1 + lay)
                wz, _ = zero_out(w, layer, fraction, gen, layer=lay)
                w2, _ = unroll(tmpl, rule, (wz, h), r, cfg.grow.fire_rate, seed + 7, use_checkpoint=False)
                rows.append({"arch": spec, "wiped_layer": lay, "grown": grown, "damaged": acc(wz),
                             "regrown": acc(w2)})
                print(json.dumps(rows[-1]), flush=True)
    return {"rule": str(rule_path or SHIPPED_RULE), "split": split, "steps": n, "regrow_steps": r,
            "fire_rate": cfg.grow.fire_rate, "fraction": fraction, "test_size": test_size, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rule", default=None)
    parser.add_argument("--archs", nargs="+", default=["cnn:m=0.5,k=3,h=100"])
    parser.add_argument("--steps", type=int, default=None, help="growth steps (default: the rule's T)")
    parser.add_argument("--regrow", type=int, default=None, help="steps after the damage (default: T)")
    parser.add_argument("--fraction", type=float, default=0.3)
    parser.add_argument("--fire-rate", type=float, default=None,
                        help="share of edges each rule step updates (default: the rule's grow.fire_rate)")
    parser.add_argument("--test-size", type=int, default=2000, help="images evaluated (the first N of the split)")
    parser.add_argument("--split", default="test", choices=["test", "val"],
                        help="test set, or the meta-trainer's validation images (to choose a snapshot)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    res = run(args.rule, args.archs, args.steps, args.regrow, args.fraction, args.test_size,
              fire_rate=args.fire_rate, split=args.split)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
