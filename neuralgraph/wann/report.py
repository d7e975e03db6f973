r"""Evaluating a WANN classification champion: single, random, ensemble, tuned and trained weights."""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor

from neuralgraph.wann.dag import WANNGraph
from neuralgraph.wann.evaluate import compile_population, run_plan
from neuralgraph.wann.module import WANNModule

if TYPE_CHECKING:  # pragma: no cover
    from neuralgraph.wann.tasks import CartPoleTask

__all__ = ["logits_by_weight", "accuracy_by_weight", "ensemble_predict", "random_weight_accuracy",
           "tune_shared_weight", "train_weights", "module_accuracy", "control_report"]


@torch.no_grad()
def logits_by_weight(graph: WANNGraph, x: Tensor, weights: Tensor, chunk: int = 2000) -> Tensor:
    """Outputs of ``graph`` for every shared weight value, ``[W, N, O]`` (batched over weights)."""
    plan = compile_population([graph], device=x.device)
    w = weights.to(x.device, x.dtype)
    return torch.cat([run_plan(plan, x[i:i + chunk], w)[0] for i in range(0, x.size(0), chunk)], dim=1)


def accuracy_by_weight(graph: WANNGraph, x: Tensor, y: Tensor, weights: Tensor) -> Tensor:
    """Accuracy for each shared weight value, ``[W]``."""
    return (logits_by_weight(graph, x, weights).argmax(-1) == y).float().mean(-1)


def ensemble_predict(logits: Tensor) -> Tensor:
    """Majority vote over weight values of ``[W, N, O]`` logits (ties: highest summed softmax).

    Shapes:
        - **output:** ``[N]`` class indices
    """
    num_classes = logits.size(-1)
    votes = torch.nn.functional.one_hot(logits.argmax(-1), num_classes).sum(0).double()  # (N, O)
    prob = torch.softmax(logits.double(), dim=-1).sum(0) / (logits.size(0) + 1)  # < 1: only breaks ties
    return (votes + prob).argmax(-1)


def random_weight_accuracy(graph: WANNGraph, x: Tensor, y: Tensor, draws: int = 100,
                           generator: Optional[torch.Generator] = None, low: float = -2.0,
                           high: float = 2.0) -> Tuple[float, float, Tensor]:
    """Accuracy with a shared weight drawn from ``U(low, high)``: mean, std and all ``draws`` values."""
    w = torch.rand(draws, generator=generator, dtype=torch.float64) * (high - low) + low
    acc = accuracy_by_weight(graph, x, y, w.float())
    return float(acc.mean()), float(acc.std()), acc


def tune_shared_weight(graph: WANNGraph, x: Tensor, y: Tensor,
                       grid: Optional[Sequence[float]] = None) -> Tuple[float, Tensor, Tensor]:
    """Best shared weight on ``(x, y)`` over ``grid`` (default: -2..2 in steps of 0.05, 0 excluded).

    Returns ``(best_w, grid, accuracies)``.
    """
    g = torch.linspace(-2, 2, 81) if grid is None else torch.as_tensor(grid, dtype=torch.float32)
    g = g[g.abs() > 1e-9]
    acc = accuracy_by_weight(graph, x, y, g)
    return float(g[int(acc.argmax())]), g, acc


@torch.no_grad()
def module_accuracy(module: WANNModule, x: Tensor, y: Tensor, chunk: int = 2000) -> float:
    correct = sum(int((module(x[i:i + chunk]).argmax(-1) == y[i:i + chunk]).sum())
                  for i in range(0, x.size(0), chunk))
    return correct / x.size(0)


def train_weights(graph: WANNGraph, x: Tensor, y: Tensor, init_weight: float = 1.0, epochs: int = 5,
                  lr: float = 1e-2, batch_size: int = 256, generator: Optional[torch.Generator] = None,
                  x_val: Optional[Tensor] = None, y_val: Optional[Tensor] = None) -> Tuple[WANNModule, Dict]:
    """Train one weight per connection with Adam from ``graph.to_module(init_weight)``.

    If validation data is given, the epoch with the best validation accuracy is kept.
    """
    module = graph.to_module(init_weight).to(x.device)
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    log: Dict[str, list] = {"loss": [], "val_acc": []}
    best = (-1.0, module.weight.detach().clone())
    for _ in range(epochs):
        perm = torch.randperm(x.size(0), generator=generator).to(x.device)
        total = 0.0
        for i in range(0, x.size(0), batch_size):
            idx = perm[i:i + batch_size]
            loss = torch.nn.functional.cross_entropy(module(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.numel()
        log["loss"].append(total / x.size(0))
        if x_val is not None and y_val is not None:
            acc = module_accuracy(module, x_val, y_val)
            log["val_acc"].append(acc)
            if acc > best[0]:
                best = (acc, module.weight.detach().clone())
    if best[0] >= 0:
        with torch.no_grad():
            module.weight.copy_(best[1])
    return module, log


@torch.no_grad()
def control_report(graph: WANNGraph, task: "CartPoleTask", trials: int = 100, seed: int = 0,
                   grid: Optional[Sequence[float]] = None) -> Dict[str, float]:
    """Returns of a control champion over ``trials`` episodes (the paper's Table 1 columns).

    * random shared weight: each trial draws ``w ~ U(-2, 2)``;
    * tuned shared weight: the best of ``grid`` (default -2..2 step 0.1, 0 excluded) on
      ``trials`` tuning episodes, then reported on ``trials`` fresh episodes.
    """
    gen = torch.Generator().manual_seed(seed)
    w = torch.rand(trials, generator=gen) * 4 - 2
    rand = task.rollout([graph], w, 1, gen)[0]  # (trials,)
    g = torch.linspace(-2, 2, 41) if grid is None else torch.as_tensor(grid, dtype=torch.float32)
    g = g[g.abs() > 1e-9]
    tune = task.rollout([graph], g, trials, gen)[0]  # (G,) mean over `trials` tuning episodes each
    best = float(g[int(tune.argmax())])
    final = task.rollout([graph], torch.full((trials,), best), 1, gen)[0]
    return {"random_weight_mean": float(rand.mean()), "random_weight_std": float(rand.std()),
            "tuned_weight": best, "tuned_weight_mean": float(final.mean()), "tuned_weight_std": float(final.std()),
            "trials": trials}
