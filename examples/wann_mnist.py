"""WANN on MNIST 16x16: search (or load) a champion and report its accuracy with shared/trained weights.

Reports, on the MNIST test split: accuracy with a random shared weight U(-2, 2)
(mean +- std over ``draws``), the majority-vote ensemble over the six weight
values, the best shared weight tuned on held-out training images, and after
training one weight per connection with Adam (``to_module()``).  Writes
``results.json`` and three plots into the run folder.

    python examples/wann_mnist.py --config examples/wann_mnist.yaml            # search, then report
    python examples/wann_mnist.py --champion runs/wann_mnist/champion.pt       # report only
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor

from neuralgraph.wann import DEFAULT_WEIGHTS, MNISTTask, WANNConfig, WANNGraph, WANNSearch, load_champion, load_mnist16
from neuralgraph.wann.plot import plot_history, plot_input_usage, plot_topology, plot_weight_sweep
from neuralgraph.wann.report import (
    accuracy_by_weight,
    ensemble_predict,
    logits_by_weight,
    module_accuracy,
    random_weight_accuracy,
    train_weights,
    tune_shared_weight,
)

Data = Dict[str, Tuple[Tensor, Tensor]]


def report(champ: WANNGraph, task: MNISTTask, x_test: Tensor, y_test: Tensor, out_dir: str, draws: int = 100,
           train_epochs: int = 10, seed: int = 0) -> Dict[str, Any]:
    """All accuracies of one champion (test split), plus plots in ``out_dir``."""
    gen = torch.Generator().manual_seed(seed)
    weights = torch.tensor(DEFAULT_WEIGHTS)
    t0 = time.perf_counter()
    per_weight = accuracy_by_weight(champ, x_test, y_test, weights)
    ens = float((ensemble_predict(logits_by_weight(champ, x_test, weights)) == y_test).float().mean())
    rmean, rstd, _ = random_weight_accuracy(champ, x_test, y_test, draws=draws, generator=gen)
    w_best, grid, _ = tune_shared_weight(champ, task.x_val, task.y_val)
    sweep = accuracy_by_weight(champ, x_test, y_test, grid)
    tuned = float(accuracy_by_weight(champ, x_test, y_test, torch.tensor([w_best]))[0])
    module, log = train_weights(champ, task.x_train, task.y_train, init_weight=w_best, epochs=train_epochs,
                                generator=gen, x_val=task.x_val, y_val=task.y_val)
    trained = module_accuracy(module, x_test, y_test)
    os.makedirs(out_dir, exist_ok=True)
    plot_topology(champ, os.path.join(out_dir, "champion_topology.png"))
    plot_weight_sweep(grid.tolist(), sweep.tolist(), os.path.join(out_dir, "accuracy_vs_weight.png"),
                      reference={"ensemble of 6": ens, "trained weights": trained},
                      title=f"WANN champion on MNIST 16x16 ({champ.num_connections} connections)")
    if champ.num_inputs == 256:
        plot_input_usage(champ, os.path.join(out_dir, "input_usage.png"))
    hist_path = os.path.join(out_dir, "history.json")
    if os.path.isfile(hist_path):
        with open(hist_path) as f:
            plot_history(json.load(f), os.path.join(out_dir, "history.png"), title="WANN search on MNIST 16x16")
    return {"champion": repr(champ), "connections": champ.num_connections, "hidden": champ.num_hidden,
            "test_acc_per_weight": dict(zip(map(str, DEFAULT_WEIGHTS), per_weight.tolist())),
            "test_acc_random_weight_mean": rmean, "test_acc_random_weight_std": rstd, "draws": draws,
            "test_acc_ensemble": ens, "tuned_weight": w_best, "test_acc_tuned_weight": tuned,
            "test_acc_trained": trained, "train_epochs": train_epochs, "train_log": log,
            "report_seconds": time.perf_counter() - t0}


def run(config: Optional[str] = None, champion: Optional[str] = None, generations: Optional[int] = None,
        out_dir: Optional[str] = None, data: Optional[Data] = None, draws: int = 100, train_epochs: int = 10,
        seed: int = 0, progress: bool = True, **overrides: Any) -> Dict[str, Any]:
    """Search (resuming a checkpoint if present) or load a champion, then :func:`report`.

    ``data`` (``{"train": (x, y), "test": (x, y)}``, ``x`` of shape ``[N, 256]``)
    replaces MNIST, e.g. for a quick test on synthetic data.
    """
    cfg = WANNConfig.from_file(config) if config else WANNConfig()
    for k, v in overrides.items():
        setattr(cfg, k, v)
    if out_dir is not None:
        cfg.out_dir = out_dir
    task = MNISTTask(data=None if data is None else data["train"], **{"device": "cpu", **cfg.task_args})
    x_test, y_test = load_mnist16("test") if data is None else data["test"]
    result: Dict[str, Any] = {}
    if champion:
        champ, meta = load_champion(champion)
        result.update(generations=meta["generation"], elapsed_s=meta["elapsed_s"])
    else:
        search = WANNSearch(cfg, task=task)
        search.resume()
        search.run(generations=generations, progress=progress)
        champ, score = search.champion()
        search.save_champion(champ, score)
        result.update(generations=search.generation, elapsed_s=search.elapsed)
    result["pop_size"] = cfg.pop_size
    result["individuals"] = result["generations"] * cfg.pop_size
    result.update(report(champ, task, x_test, y_test, cfg.out_dir, draws=draws, train_epochs=train_epochs,
                         seed=seed))
    with open(os.path.join(cfg.out_dir, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="examples/wann_mnist.yaml")
    parser.add_argument("--champion", default=None, help="champion.pt to report on (skips the search)")
    parser.add_argument("--generations", type=int, default=None)
    parser.add_argument("--out-dir", default=None)
    parser.add_argument("--draws", type=int, default=100)
    parser.add_argument("--train-epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    res = run(args.config, args.champion, args.generations, args.out_dir, draws=args.draws,
              train_epochs=args.train_epochs, seed=args.seed)
    print(json.dumps({k: v for k, v in res.items() if k != "train_log"}, indent=1))


if __name__ == "__main__":
    main()
