"""Test accuracy of iris networks grown by a meta-trained MLPRule (training and held-out archs).

    full:  python examples/iris_results.py --rule runs/iris/rule.pt --json docs/results/iris.json
    quick: python examples/iris_results.py --quick
"""

from __future__ import annotations

import argparse
import tempfile
from typing import Any, Dict, List, Sequence

import torch

from neuralgraph.datasets.splits import load_split
from neuralgraph.meta import grow_trajectory, load_rule
from neuralgraph.meta.trainer import factory_from_config


def run(rule_path: str, archs: Sequence[str], steps: Sequence[int], seeds: int = 10) -> Dict[str, Any]:
    torch.set_num_threads(1)
    rule, cfg = load_rule(rule_path)
    d = cfg.data
    split = load_split(d.name, d.val_fraction, d.test_fraction, d.split_seed)
    factory = factory_from_config(cfg)
    out: Dict[str, Any] = {"rule": rule_path, "train_archs": cfg.arch.train, "seeds": seeds,
                           "test_size": int(split.test[1].numel()), "results": {}}
    for spec in archs:
        per_step: Dict[int, List[float]] = {s: [] for s in steps}
        for seed in range(seeds):
            rec = grow_trajectory(factory, rule, spec, max(steps), cfg.grow.fire_rate, seed, split.test)
            for s in steps:
                per_step[s].append(rec["acc"][rec["step"].index(s)])
        out["results"][spec] = {str(s): {"mean": sum(v) / len(v), "min": min(v), "max": max(v)}
                                for s, v in per_step.items()}
    return out


def main(argv: Any = None) -> int:
    from _common import provenance, quick_rule, write_json

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rule", default="runs/iris/rule.pt")
    p.add_argument("--archs", default="4-8-3,4-8-8-3,4-16-3,4-16-16-3,4-8-8-8-3")
    p.add_argument("--steps", default="10,20,50,100")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--quick", action="store_true", help="meta-train a seconds-long rule first")
    p.add_argument("--json")
    a = p.parse_args(argv)
    if a.quick:
        a.rule = quick_rule("examples/iris.yaml", tempfile.mkdtemp(prefix="iris_quick_"))
        a.steps, a.seeds, a.archs = "2,3", 1, "4-8-3,4-8-8-3"
    res = run(a.rule, a.archs.split(","), [int(s) for s in a.steps.split(",")], a.seeds)
    res.update(provenance())
    write_json(res, a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
