"""Greedy rule soup on the validation split (issue 4, session 21).

Start from the MNIST grid rule and offer each continuation of it in turn: keep a candidate when the
validation grid mean (3 rule steps, every edge firing) of the averaged rule rises. Needs the runs of
``examples/mnist_grid_soup.yaml`` (seeds 11-14) and ``examples/mnist_grid_subset05.yaml``.

    python examples/mnist_grid_greedy_soup.py --out runs/s21/greedy
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, List, Tuple

import torch

from neuralgraph.cli_meta import _data, eval_grid
from neuralgraph.meta import build_rule, load_rule
from neuralgraph.meta.average import average_rules

PARENT = "neuralgraph/checkpoints/mlp_mnist_grid.pt"
SUBSET05 = "runs/mnist_grid_subset05/snapshots/rule_{:07d}.pt"
SOUP = "runs/mnist_grid_soup_s{}/snapshots/rule_{:07d}.pt"


def candidates() -> List[str]:
    out = [SUBSET05.format(k) for k in (6000, 5000, 4000, 3000, 2000, 1000)]
    out += [SOUP.format(s, 2000) for s in (11, 12, 13, 14)]
    out += [SOUP.format(s, k) for k in (1500, 1000, 500) for s in (11, 12, 13, 14)]
    return out


def val_mean(paths: List[str], data: Tuple[Any, Any]) -> float:
    """Validation grid mean of the parameter mean of ``paths`` (3 rule steps, every edge firing)."""
    _, cfg = load_rule(paths[0])
    cfg.set_fire_rate(1.0, "fire rate")
    rule = build_rule(cfg)
    rule.load_state_dict(average_rules(paths)["rule_state"])
    xs, ys = list(cfg.arch.grid_x), list(cfg.arch.grid_y or cfg.arch.grid_x)
    vals = eval_grid(rule.eval(), cfg, xs, ys, 3, 1, data, progress=False)
    return sum(map(sum, vals)) / (len(xs) * len(ys))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/s21/greedy", help="prefix: writes PREFIX.json")
    args = ap.parse_args()
    prefix = Path(args.out)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    data = _data(load_rule(PARENT)[1], "val")  # loaded once for every candidate
    soup = [PARENT]
    best = val_mean([PARENT, PARENT], data)  # the parent alone
    log = []
    for cand in candidates():
        v = val_mean(soup + [cand], data)
        keep = v > best
        log.append({"candidate": cand, "val": v, "kept": keep})
        print(f"{cand} {v:.4f} {'kept' if keep else '-'}", flush=True)
        if keep:
            soup, best = soup + [cand], v
    Path(str(prefix) + ".json").write_text(json.dumps({"soup": soup, "val": best, "log": log}, indent=1))
    print(json.dumps({"rules": len(soup), "val": best}))


if __name__ == "__main__":
    main()
