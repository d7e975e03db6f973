"""``neuralgraph zoo-build`` and ``neuralgraph zoo-predict``: the CNN model zoo and generalization prediction.

Both read one YAML/JSON file (see ``examples/zoo.yaml``): its ``zoo:`` section is
a :class:`~neuralgraph.datasets.zoo.ZooConfig`, its ``predict:`` section a
:class:`~neuralgraph.nn.predict.PredictConfig`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict

__all__ = ["add_parser", "load_config"]


def load_config(path: str) -> Dict[str, Any]:
    """Read a YAML or JSON config file into a dict (clear error if missing/malformed)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {path!r} not found")
    text = p.read_text()
    if p.suffix == ".json":
        cfg = json.loads(text)
    else:
        import yaml

        cfg = yaml.safe_load(text)
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: expected a mapping with 'zoo:' and/or 'predict:' sections")
    return cfg


def add_parser(sub: Any) -> None:
    b = sub.add_parser("zoo-build", help="train the CNN model zoo (resumable)")
    b.add_argument("config", help="YAML/JSON file with a 'zoo:' section")
    b.add_argument("--resume", action="store_true", help="continue an existing zoo (skip finished nets)")
    b.add_argument("--num-networks", type=int, default=None, help="override zoo.num_networks")
    b.add_argument("--root", default=None, help="override zoo.root")
    b.add_argument("--shard", default="0/1", metavar="K/N",
                   help="build only networks i with i %% N == K (run N processes for N cores)")
    b.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    b.set_defaults(func=run_build)

    p = sub.add_parser("zoo-predict", help="train/evaluate generalization predictors on a built zoo")
    p.add_argument("config", help="YAML/JSON file with 'zoo:' and 'predict:' sections")
    p.add_argument("--models", nargs="+", default=None, help="override predict.models")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="override predict.seeds")
    p.add_argument("--root", default=None, help="override zoo.root")
    p.add_argument("--out", default=None, help="override predict.out (results JSON folder)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any predict: setting, e.g. --set hidden=32 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run_predict)


def run_build(args: argparse.Namespace) -> int:
    from neuralgraph.datasets.zoo import ZooConfig, build_zoo

    cfg = ZooConfig.from_dict(load_config(args.config).get("zoo", {}))
    if args.num_networks is not None:
        cfg.num_networks = args.num_networks
    if args.root is not None:
        cfg.root = args.root
    try:
        k, n = (int(v) for v in args.shard.split("/"))
    except ValueError as exc:
        raise ValueError(f"--shard must look like K/N (e.g. 0/2), got {args.shard!r}") from exc
    build_zoo(cfg, resume=args.resume, progress=not args.no_progress, log=print, shard=(k, n))
    return 0


def run_predict(args: argparse.Namespace) -> int:
    import yaml

    from neuralgraph.nn.predict import PredictConfig, run_prediction

    raw = load_config(args.config)
    section = dict(raw.get("predict", {}))
    for item in args.set:
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        section[key] = yaml.safe_load(value)
    cfg = PredictConfig.from_dict(section)
    cfg.zoo_root = args.root or cfg.zoo_root or raw.get("zoo", {}).get("root", "runs/zoo")
    if args.models is not None:
        cfg.models = list(args.models)
    if args.seeds is not None:
        cfg.seeds = list(args.seeds)
    if args.out is not None:
        cfg.out = args.out
    results = run_prediction(cfg, progress=not args.no_progress, log=print)
    print(json.dumps(results["summary"], indent=2))
    return 0
