"""Zero-out recovery: grow, let accuracy peak, zero a random layer + 30% of the weights, keep growing.

    full:  python examples/zero_out.py --rule runs/mnist_grid/rule.pt --arch 784-50-50-10 \
               --grow 20 --after 40 --json docs/results/zero_out.json --plot docs/figures/meta_zero_out.png
    quick: python examples/zero_out.py --quick

``--layer L`` wipes layer ``L`` (0 = the input layer) instead of a random one; ``--fraction 0`` wipes
the layer alone. ``--split val`` scores on the validation images the meta-trainer held out (to choose a
snapshot before taking test numbers); the default is the test set.
"""

from __future__ import annotations

import argparse
import tempfile
from typing import Any, Dict, Optional

import torch

from neuralgraph.datasets.splits import load_split
from neuralgraph.meta import grow_trajectory, load_rule, zero_out
from neuralgraph.meta.trainer import factory_from_config


def run(rule_path: str, arch: str, grow: int, after: int, seeds: int, fraction: float = 0.3,
        split_name: str = "test", wipe_layer: Optional[int] = None) -> Dict[str, Any]:
    if split_name not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split_name!r}")
    torch.set_num_threads(1)
    rule, cfg = load_rule(rule_path)
    d = cfg.data
    split = load_split(d.name, d.val_fraction, d.test_fraction, d.split_seed, d.root, flatten=d.flatten)
    data = getattr(split, split_name)
    factory = factory_from_config(cfg)
    layer = factory.template(arch).edge_pos[:, 0]
    runs = []
    for seed in range(seeds):
        first = grow_trajectory(factory, rule, arch, grow, cfg.grow.fire_rate, seed, data)
        peak_step = first["step"][first["acc"].index(max(first["acc"]))]
        # regrow to the peak step (same seed = same trajectory), then perturb
        st = grow_trajectory(factory, rule, arch, peak_step, cfg.grow.fire_rate, seed, data)
        gen = torch.Generator().manual_seed(10_000 + seed)
        w, h = st["state"]
        w, lay = zero_out(w, layer, fraction, gen, wipe_layer)
        second = grow_trajectory(factory, rule, arch, after, cfg.grow.fire_rate, 20_000 + seed, data,
                                 state=(w, h))
        peak = max(first["acc"])
        runs.append({"seed": seed, "peak_acc": peak, "peak_step": peak_step, "zeroed_layer": lay,
                     "acc_after_zero_out": second["acc"][0], "recovered_max": max(second["acc"][1:]),
                     "recovered_final": second["acc"][-1],
                     "steps_to_within_2pts": next((s for s, a in zip(second["step"], second["acc"])
                                                   if s > 0 and a >= peak - 0.02), None),
                     "curve": {"step": first["step"][:peak_step + 1] + [peak_step + s for s in second["step"]],
                               "acc": first["acc"][:peak_step + 1] + second["acc"]}})
    return {"rule": rule_path, "arch": arch, "split": split_name, "fraction": fraction, "grow": grow,
            "after": after, "runs": runs}


def main(argv: Any = None) -> int:
    from _common import provenance, quick_rule, write_json

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rule", default="runs/mnist_grid/rule.pt")
    p.add_argument("--arch", default="784-50-50-10")
    p.add_argument("--grow", type=int, default=20, help="steps before the perturbation (peak searched here)")
    p.add_argument("--after", type=int, default=40, help="steps after the perturbation")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--split", default="test", choices=["val", "test"])
    p.add_argument("--layer", type=int, default=None, help="layer to wipe (0 = input layer; default: random)")
    p.add_argument("--fraction", type=float, default=0.3, help="share of the other weights zeroed too")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json")
    p.add_argument("--plot")
    a = p.parse_args(argv)
    if a.quick:
        a.rule = quick_rule("examples/iris.yaml", tempfile.mkdtemp(prefix="zo_"))
        a.arch, a.grow, a.after, a.seeds = "4-8-8-3", 3, 3, 1
    res = run(a.rule, a.arch, a.grow, a.after, a.seeds, a.fraction, split_name=a.split, wipe_layer=a.layer)
    if a.plot:
        from neuralgraph.meta.plots import curves

        r0 = res["runs"]
        wiped = "random layer" if a.layer is None else f"layer {a.layer}"
        curves({f"seed {r['seed']}": (r["curve"]["step"], r["curve"]["acc"]) for r in r0}, a.plot, "rule step",
               f"{a.split} accuracy", f"{a.arch}: zero-out ({wiped} + {a.fraction:.0%}) at the peak (red)",
               vlines=[r["peak_step"] + 0.5 for r in r0])
    res.update(provenance())
    write_json(res, a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
