"""Adam reference for the MNIST MLP grid [784, X, Y, 10] (issue 4): what backprop reaches on the same
architectures and split as ``neuralgraph eval``, per epoch, to put the grown networks' grid in context.

Each cell: a fresh ``nn.Sequential(Linear, ReLU, Linear, ReLU, Linear)`` (PyTorch's default init, seed
``--seed``), Adam lr 1e-3, batch 128, ``--epochs`` passes over the 54,000 training images (the meta-training
split: 6,000 are held out as validation), accuracy on the 10,000 test images after every epoch and after
the first ``--early`` mini-batches.  Writes JSON (``--out PREFIX`` -> PREFIX.json) and a heatmap of the
last epoch (PREFIX.png).

    python examples/mnist_grid_adam.py --epochs 3 --out docs/results/meta/mnist_grid10_adam
    python examples/mnist_grid_adam.py --grid 10,20 --epochs 1 --out /tmp/adam   # seconds
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn


def train_cell(x: int, y: int, data, epochs: int, early: int, seed: int) -> dict:
    (xtr, ytr), (xte, yte) = data
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(xtr.size(1), x), nn.ReLU(), nn.Linear(x, y), nn.ReLU(), nn.Linear(y, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)

    def test_acc() -> float:
        with torch.no_grad():
            return float((net(xte).argmax(1) == yte).float().mean())

    rec = {"x": x, "y": y, "epoch_acc": [], "early_acc": None}
    t0 = time.perf_counter()
    step = 0
    for _ in range(epochs):
        perm = torch.randperm(xtr.size(0), generator=gen)
        for i in range(0, xtr.size(0), 128):
            idx = perm[i:i + 128]
            loss = nn.functional.cross_entropy(net(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step == early:
                rec["early_acc"] = test_acc()
        rec["epoch_acc"].append(test_acc())
    rec["seconds"] = round(time.perf_counter() - t0, 2)
    return rec


def main(argv: list | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", default="10,20,30,40,50,60,70,80,90,100", help="widths X (= Y)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--early", type=int, default=100, help="also score after this many mini-batches")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="output prefix (PREFIX.json, PREFIX.png)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from neuralgraph.datasets import load_split

    split = load_split("mnist", 0.1)
    data = (split.train, split.test)
    widths = [int(v) for v in args.grid.split(",")]
    cells = []
    t0 = time.perf_counter()
    for y in widths:
        for x in widths:
            cells.append(train_cell(x, y, data, args.epochs, args.early, args.seed))
            print(json.dumps(cells[-1]), flush=True)
    acc = [[c["epoch_acc"][-1] for c in cells[i * len(widths):(i + 1) * len(widths)]] for i in range(len(widths))]
    flat = [a for row in acc for a in row]
    per_epoch = [sum(c["epoch_acc"][e] for c in cells) / len(cells) for e in range(args.epochs)]
    early = [c["early_acc"] for c in cells if c["early_acc"] is not None]
    summary = {"what": "Adam lr 1e-3, batch 128, PyTorch default init", "xs": widths, "ys": widths,
               "epochs": args.epochs, "seed": args.seed, "acc": acc, "mean": sum(flat) / len(flat),
               "best": max(flat), "worst": min(flat), "cells_ge_095": sum(a >= 0.95 for a in flat),
               "mean_per_epoch": per_epoch, "early_steps": args.early,
               "mean_early": sum(early) / len(early) if early else None, "cells": cells,
               "seconds": round(time.perf_counter() - t0, 1), "threads": args.threads,
               "torch": torch.__version__}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from neuralgraph.meta.plots import grid_heatmap, output_path

    output_path(out, ".json").write_text(json.dumps(summary, indent=1))
    grid_heatmap(acc, widths, widths, [], str(output_path(out, ".png")),
                 title=f"Adam, {args.epochs} epochs: mean {summary['mean']:.3f}")
    print(json.dumps({k: summary[k] for k in ("mean", "best", "worst", "cells_ge_095", "mean_per_epoch",
                                              "mean_early", "seconds")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
