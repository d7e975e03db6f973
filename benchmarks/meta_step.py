"""Meta-training speed: seconds per meta-step of the Weight Transformer on the CNN
training architectures, for each activation-checkpointing mode (``train.grad_checkpoint``).

Every mode runs in its own process (so each peak-memory figure is that mode's own),
from the same rule, seed and batches: ``"torch"`` and ``"none"`` must give the same
losses to the last bit, ``"native"`` the same to rounding (checked and reported).
Speed-ups are against ``"torch"`` (the default), measured in the same run.

    python benchmarks/meta_step.py --json                 # MNIST CNN stage-2 config, 40 meta-steps
    python benchmarks/meta_step.py --config examples/mnist_grid_fast.yaml --steps 20 --json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from common import dump, machine  # noqa: E402

MODES = ("torch", "none", "native")


def run_one(config: str, mode: str, steps: int, warmup: int, init_rule: str, rule_steps: int) -> Dict[str, Any]:
    """Time ``steps`` meta-steps in this process (called in a child process)."""
    import tempfile

    import torch

    from neuralgraph.meta.config import MetaConfig
    from neuralgraph.meta.trainer import MetaTrainer

    with tempfile.TemporaryDirectory() as out:
        overrides = [f"train.out_dir={out}", f"train.grad_checkpoint={mode}", "train.curriculum_fraction=0"]
        if rule_steps:
            overrides += [f"train.steps_min={rule_steps}", f"train.steps_max={rule_steps}"]
        if init_rule:
            overrides.append(f"train.init_rule={init_rule}")
        cfg = MetaConfig.from_file(config, overrides=overrides)
        trainer = MetaTrainer(cfg)
        for _ in range(warmup):
            trainer.meta_step()
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        losses: List[float] = []
        t0 = time.perf_counter()
        for _ in range(steps):
            losses.append(trainer.meta_step()["loss"])
        seconds = (time.perf_counter() - t0) / steps
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {"mode": mode, "seconds_per_meta_step": seconds, "losses": losses, "threads": torch.get_num_threads(),
            "peak_rss_mb": rss1, "peak_rss_growth_mb": rss1 - rss0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=os.path.join(ROOT, "examples", "grow_cnn_stage2.yaml"))
    ap.add_argument("--init-rule", default=os.path.join(ROOT, "neuralgraph", "checkpoints", "wt_mnist_cnn_stage2.pt"),
                    help="start from these rule weights ('' = the config's own initialisation)")
    ap.add_argument("--steps", type=int, default=40, help="timed meta-steps per mode")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rule-steps", type=int, default=2, help="rule steps per meta-step (0 = the config's)")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--json", action="store_true", help="print JSON (default: a short table)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_one(args.config, args.child, args.steps, args.warmup, args.init_rule,
                                 args.rule_steps)))
        return
    runs: Dict[str, Dict[str, Any]] = {}
    for mode in args.modes:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", mode, "--config", args.config,
               "--init-rule", args.init_rule, "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--rule-steps", str(args.rule_steps)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        runs[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    ref = runs.get("torch")
    for r in runs.values():
        if ref is not None:
            r["speedup_vs_torch"] = ref["seconds_per_meta_step"] / r["seconds_per_meta_step"]
            r["max_loss_difference_vs_torch"] = max(abs(a - b) for a, b in zip(r["losses"], ref["losses"]))
        r["mean_loss"] = sum(r["losses"]) / len(r["losses"])
    for r in runs.values():
        del r["losses"]
    if ref is not None and "none" in runs and runs["none"]["max_loss_difference_vs_torch"] != 0.0:
        raise SystemExit("'none' and 'torch' checkpointing gave different losses: they must be identical")
    result = {"benchmark": "meta_step", "config": os.path.relpath(args.config, ROOT),
              "init_rule": os.path.relpath(args.init_rule, ROOT) if args.init_rule else None,
              "meta_steps_timed": args.steps, "rule_steps": args.rule_steps, "machine": machine(), "modes": runs}
    if args.json:
        dump(result)
        return
    for mode, r in runs.items():
        print(f"{mode:>7}: {r['seconds_per_meta_step']:.4f} s/meta-step  x{r.get('speedup_vs_torch', 1):.2f}  "
              f"peak RSS {r['peak_rss_mb']:.0f} MB  loss diff {r.get('max_loss_difference_vs_torch', 0):.2e}")


if __name__ == "__main__":
    main()
