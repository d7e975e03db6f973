"""Predict a CNN's test accuracy from its weights (generalization prediction on a model zoo).

Builds (or resumes) the zoo described by ``examples/zoo.yaml`` and trains NG-GNN,
NG-T and the StatNN baseline on architectures *without* 5x5 kernels, scoring
Kendall's tau on the held-out 5x5-kernel networks::

    python examples/predict_generalization.py --config examples/zoo.yaml --num-networks 600
    python examples/predict_generalization.py --models ng_t --seeds 0 --epochs 2   # quick look

Same as ``neuralgraph zoo-build CONFIG --resume`` followed by ``neuralgraph zoo-predict CONFIG``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Dict, List, Optional

from neuralgraph.cli_zoo import load_config
from neuralgraph.datasets.zoo import ZooConfig, build_zoo
from neuralgraph.nn.predict import PredictConfig, run_prediction


def run(config: str = "examples/zoo.yaml", num_networks: Optional[int] = None,
        models: Optional[List[str]] = None, seeds: Optional[List[int]] = None,
        epochs: Optional[int] = None, root: Optional[str] = None, out: Optional[str] = None,
        progress: bool = True, **overrides: Any) -> Dict[str, Any]:
    """Build/resume the zoo, then train and score the predictors; returns the summary."""
    raw = load_config(config)
    zcfg = ZooConfig.from_dict(raw.get("zoo", {}))
    if num_networks is not None:
        zcfg.num_networks = num_networks
    if root is not None:
        zcfg.root = root
    build_zoo(zcfg, resume=True, progress=progress, log=print)
    pcfg = PredictConfig.from_dict({**raw.get("predict", {}), **overrides})
    pcfg.zoo_root = zcfg.root
    if models is not None:
        pcfg.models = models
    if seeds is not None:
        pcfg.seeds = seeds
    if epochs is not None:
        pcfg.epochs = epochs
    if out is not None:
        pcfg.out = out
    return run_prediction(pcfg, progress=progress, log=print)["summary"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="examples/zoo.yaml")
    parser.add_argument("--num-networks", type=int, default=None, help="zoo size (a prefix of the full zoo)")
    parser.add_argument("--models", nargs="+", default=None, help="statnn ng_gnn ng_t")
    parser.add_argument("--seeds", nargs="+", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--root", default=None, help="zoo folder")
    parser.add_argument("--out", default=None, help="results folder")
    args = parser.parse_args()
    summary = run(args.config, args.num_networks, args.models, args.seeds, args.epochs, args.root, args.out)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
