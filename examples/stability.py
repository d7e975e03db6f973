"""Stability with vs without sample pooling (seed 001, Table 1) on iris.

For each rule, grow a network for ``--steps`` rule steps and record the training
loss after every step.  "Steps to train" = step of the minimum loss; "steps
within 10%" = consecutive steps after the minimum whose loss stays within 10%
of it.  Mean (and median) over ``--seeds`` growths.

    full:  python examples/stability.py --rules runs/iris/rule.pt,runs/iris_nopool/rule.pt \
               --steps 1000 --json docs/results/stability.json --plot docs/figures/meta_stability.png
    quick: python examples/stability.py --quick
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
from typing import Any, Dict, List, Optional, Sequence

import torch

from neuralgraph.datasets.splits import load_split
from neuralgraph.meta import grow_trajectory, load_rule
from neuralgraph.meta.trainer import factory_from_config


def stability(losses: Sequence[float], chance: float = float("inf")) -> Dict[str, Any]:
    """Stability numbers of a loss curve (index = rule step).

    ``steps_to_min``: step of the minimum; ``steps_within_10pct``: consecutive
    steps after it with loss <= 1.1 x min (Table 1 of seed 001);
    ``count_within_10pct``: all later steps within 10%, consecutive or not;
    ``steps_below_chance``: consecutive steps after the minimum whose loss
    stays below ``chance`` (the loss of a uniform prediction, ln C).
    """
    finite = [v if v == v else float("inf") for v in losses]
    i_min = min(range(len(finite)), key=finite.__getitem__)
    lo = finite[i_min]
    after = finite[i_min + 1:]

    def run_length(ok: Any) -> int:
        n = 0
        for v in after:
            if not ok(v):
                break
            n += 1
        return n

    n = run_length(lambda v: v <= 1.1 * lo)
    return {"steps_to_min": i_min, "steps_within_10pct": n, "min_loss": lo,
            "count_within_10pct": sum(v <= 1.1 * lo for v in after),
            "steps_below_chance": run_length(lambda v: v < chance),
            "truncated": int(i_min + 1 + n == len(finite))}


def run(rules: Sequence[str], arch: str, steps: int, seeds: int, seed_start: int = 0,
        bar: int = 500, fire_rate: Optional[float] = None) -> Dict[str, Any]:
    """Grow ``arch`` with each rule for ``steps`` rule steps from seeds ``seed_start .. seed_start + seeds - 1``;
    ``bar`` is the steps-within-10% count a growth must reach to count in ``growths_at_bar``; ``fire_rate``
    (``None``: each rule's training fire rate, ``grow.fire_rate``) is the fraction of edges a rule step updates."""
    torch.set_num_threads(1)
    out: Dict[str, Any] = {"arch": arch, "steps": steps, "seeds": seeds, "seed_start": seed_start, "bar": bar,
                           "fire_rate": fire_rate, "rules": {}}
    for path in rules:
        rule, cfg = load_rule(path)
        d = cfg.data
        split = load_split(d.name, d.val_fraction, d.test_fraction, d.split_seed)
        factory = factory_from_config(cfg)
        fr = cfg.grow.fire_rate if fire_rate is None else fire_rate
        rows: List[Dict[str, Any]] = []
        curves = []
        for seed in range(seed_start, seed_start + seeds):
            rec = grow_trajectory(factory, rule, arch, steps, fr, seed, split.train)
            st = stability(rec["loss"], math.log(split.num_classes))
            st["final_test_acc"] = grow_trajectory(factory, rule, arch, st["steps_to_min"], fr,
                                                   seed, split.test)["acc"][-1]
            rows.append(st)
            curves.append(rec["loss"])
        out["rules"][path] = {
            "name": cfg.name, "pool_size": cfg.train.pool_size, "fire_rate": fr, "per_seed": rows,
            "mean_steps_to_min": statistics.mean(r["steps_to_min"] for r in rows),
            "mean_steps_within_10pct": statistics.mean(r["steps_within_10pct"] for r in rows),
            "median_steps_within_10pct": statistics.median(r["steps_within_10pct"] for r in rows),
            "growths_at_bar": sum(r["steps_within_10pct"] >= bar for r in rows),
            "mean_count_within_10pct": statistics.mean(r["count_within_10pct"] for r in rows),
            "mean_steps_below_chance": statistics.mean(r["steps_below_chance"] for r in rows),
            "curve_seed0": curves[0]}
    return out


def main(argv: Any = None) -> int:
    from _common import provenance, quick_rule, write_json

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rules", default="runs/iris/rule.pt,runs/iris_nopool/rule.pt")
    p.add_argument("--arch", default="4-8-3")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--seed-start", type=int, default=0, help="first growth seed (fresh seeds re-check a choice)")
    p.add_argument("--fire-rate", type=float, default=None,
                   help="fraction of edges each rule step updates (default: each rule's grow.fire_rate)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--quick-config", default="examples/iris.yaml")
    p.add_argument("--json")
    p.add_argument("--plot")
    a = p.parse_args(argv)
    rules = a.rules.split(",")
    if a.quick:
        rules = [quick_rule(a.quick_config, tempfile.mkdtemp(prefix="stab_")),
                 quick_rule("examples/iris_nopool.yaml", tempfile.mkdtemp(prefix="stab_np_"))]
        a.steps, a.seeds = 5, 1
    res = run(rules, a.arch, a.steps, a.seeds, a.seed_start, fire_rate=a.fire_rate)
    if a.plot:
        from neuralgraph.meta.plots import curves

        curves({f"{v['name']} (pool {v['pool_size']})": (list(range(len(v["curve_seed0"]))), v["curve_seed0"])
                for v in res["rules"].values()}, a.plot, "rule step", f"train loss (growth seed {a.seed_start})",
               f"iris {a.arch}: stability with / without sample pooling", logy=True)
    for v in res["rules"].values():
        v.pop("curve_seed0")
    res.update(provenance())
    write_json(res, a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
