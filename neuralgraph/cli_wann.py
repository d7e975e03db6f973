"""``neuralgraph wann CONFIG [--resume]``: run a Weight Agnostic Neural Network search."""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("wann", help="evolve a weight agnostic network (MNIST 16x16 or cart-pole swing-up)")
    p.add_argument("config", help="YAML/JSON file of WANNConfig fields (see examples/wann_mnist.yaml)")
    p.add_argument("--resume", action="store_true", help="continue from out_dir/checkpoint.pkl if present")
    p.add_argument("--generations", type=int, default=None, help="override config.generations")
    p.add_argument("--time-limit-min", type=float, default=None, help="override config.time_limit_min")
    p.add_argument("--out-dir", default=None, help="override config.out_dir")
    p.add_argument("--trials", type=int, default=100,
                   help="control tasks: episodes for the random/tuned shared-weight report (0 = skip)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from neuralgraph.wann.report import control_report
    from neuralgraph.wann.search import WANNConfig, WANNSearch
    from neuralgraph.wann.tasks import CartPoleTask

    cfg = WANNConfig.from_file(args.config)
    if args.generations is not None:
        cfg.generations = args.generations
    if args.time_limit_min is not None:
        cfg.time_limit_min = args.time_limit_min
    if args.out_dir is not None:
        cfg.out_dir = args.out_dir
    search = WANNSearch(cfg)
    if args.resume and search.resume():
        print(f"resumed {search.checkpoint_path} at generation {search.generation}")
    search.run(progress=not args.no_progress)
    champ, score = search.champion()
    path = search.save_champion(champ, score)
    with torch.no_grad():
        per_weight = search.task.score([champ], search.weights)[0]
    out = {"generations": search.generation, "individuals": search.generation * cfg.pop_size,
           "elapsed_s": round(search.elapsed, 1), "champion": repr(champ),
           "val_score_mean_over_weights": round(score, 4),
           "val_score_per_weight": {str(w): round(float(s), 4) for w, s in zip(cfg.weights, per_weight)},
           "champion_path": path}
    if isinstance(search.task, CartPoleTask) and args.trials > 0:
        out["control"] = control_report(champ, search.task, trials=args.trials, seed=cfg.seed)
    print(json.dumps(out))
    return 0
