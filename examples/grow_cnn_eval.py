"""Evaluate a CNN-growing rule on the seed-000 grid (m x h, one heatmap per kernel size).

Training architectures are outlined in red.  Accuracy is on the test set of the rule's dataset
(MNIST or Fashion-MNIST; ``--dataset`` overrides; ``--test-size`` images; ``--split val`` takes the
meta-trainer's validation images instead, for choosing a snapshot), after ``--steps`` rule
steps, no backprop.  ``--adam-steps N`` also trains every grid architecture from PyTorch's default
initialisation with Adam (lr 1e-3, batch 64, N steps) and reports its test accuracy beside the grown one.

    python examples/grow_cnn_eval.py --rule neuralgraph/checkpoints/wt_mnist_cnn.pt \
        --ms 0.125 0.25 0.5 1 --hs 16 32 100 200 --ks 3 4 5 --out docs/figures/grow_cnn_grid
    python examples/grow_cnn_eval.py --rule runs/grow_cnn_fashion/rule.pt --adam-steps 938 \
        --out docs/figures/grow_cnn_fashion_grid
    python examples/grow_cnn_eval.py --rule neuralgraph/checkpoints/wt_mnist_cnn_k5s3.pt --fire-rate 1 \
        --ms 0.5 1 1.5 2 2.5 --hs 100 200 300 400 --ks 5 --steps 3 --test-size 10000 \
        --code-tile cnn:m=0.25,k=5,h=100 --out docs/figures/grow_cnn_k5s3_tiled   # wide CNNs as copies
    python examples/grow_cnn_eval.py --quick   # seconds (used by the tests)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch


def _fmt(m: float) -> str:
    return f"{m:g}"


def run(rule_path: Optional[str] = None, ms: Sequence[float] = (0.125, 0.25), hs: Sequence[int] = (16, 32),
        ks: Sequence[int] = (3, 4), steps: Optional[int] = None, test_size: int = 2000, seed: int = 0,
        out: Optional[str] = None, dataset: Optional[str] = None, adam_steps: int = 0,
        fire_rate: Optional[float] = None, split: str = "test", code_tile: Optional[str] = None) -> Dict[str, Any]:
    """Grow every ``cnn:m,k,h`` of the grid and return ``{k: [[acc per m] per h]}`` plus summaries.

    ``fire_rate`` overrides the rule's ``grow.fire_rate`` (1.0: every edge updates, growth is deterministic).
    ``split``: ``"test"`` (the official test set) or ``"val"`` (the validation images the meta-trainer
    holds out of the training set: ``data.val_fraction`` and ``data.split_seed`` of the rule's config).

    ``code_tile``: a reference CNN spec; hidden neurons are indexed modulo its widths (``grow.code_tile``),
    so cells wider than the reference grow as copies of its neurons; cells with larger kernels get its
    kernels embedded (a ``k=3`` reference for ``k=4`` cells; ``GraphFactory.tile_kernels``).

    With ``adam_steps > 0`` every cell is also trained with Adam (``"adam_acc"``, same layout)."""
    from _common import image_split

    from neuralgraph.datasets import mnist_tensors
    from neuralgraph.datasets.architectures import build_arch, parse_arch
    from neuralgraph.demo import SHIPPED_RULE
    from neuralgraph.meta.grow import accuracy, unroll
    from neuralgraph.meta.trainer import factory_from_config, load_rule

    rule, cfg = load_rule(rule_path or SHIPPED_RULE)
    cfg.set_fire_rate(fire_rate)
    cfg.set_code_tile(code_tile)
    factory = factory_from_config(cfg)
    n_steps = steps if steps is not None else cfg.train.steps_max
    dataset = dataset or cfg.data.name
    x, y = image_split(cfg, dataset, split, test_size)
    train_xy = mnist_tensors(dataset, "train", flatten=False) if adam_steps > 0 else None
    adam_grids: Dict[int, List[List[float]]] = {}
    adam_seconds = 0.0
    trained = {(kw["m"], kw["k"], kw["h"]) for kind, kw in map(parse_arch, cfg.trained_archs()) if kind == "cnn"}
    grids: Dict[int, List[List[float]]] = {}
    params: Dict[str, int] = {}
    t0 = time.perf_counter()
    with torch.no_grad():
        for k in ks:
            grid, adam_grid = [], []
            for h in hs:
                row, adam_row = [], []
                for m in ms:
                    spec = f"cnn:m={_fmt(m)},k={k},h={h}"
                    template = factory.template(spec)
                    w, _ = unroll(template, rule, factory.fresh(spec, torch.Generator().manual_seed(seed)),
                                  n_steps, cfg.grow.fire_rate, seed, use_checkpoint=False)
                    row.append(accuracy(template, factory.network_weight(spec, w), x, y)[0])
                    params[spec] = template.num_edges
                    factory.forget(spec)
                    if train_xy is not None:
                        t1 = time.perf_counter()
                        adam_row.append(_adam_accuracy(build_arch(spec), train_xy, (x, y), adam_steps, seed))
                        adam_seconds += time.perf_counter() - t1
                grid.append(row)
                if adam_row:
                    adam_grid.append(adam_row)
            grids[k] = grid
            if adam_grid:
                adam_grids[k] = adam_grid
    flat = [v for g in grids.values() for row in g for v in row]
    result = {"rule": str(rule_path or SHIPPED_RULE), "dataset": dataset, "split": split, "steps": n_steps,
              "test_size": test_size,
              "fire_rate": cfg.grow.fire_rate, "code_tile": cfg.grow.code_tile,
              "ms": list(ms), "hs": list(hs), "ks": list(ks), "acc": {str(k): g for k, g in grids.items()},
              "trained": sorted([list(t) for t in trained]), "parameters": params,
              "mean": sum(flat) / len(flat), "best": max(flat), **_unseen(grids, ms, hs, trained),
              "fraction_ge_95": sum(v >= 0.95 for v in flat) / len(flat),
              "seconds": round(time.perf_counter() - t0, 1)}
    if adam_grids:
        adam_flat = [v for g in adam_grids.values() for row in g for v in row]
        result.update({"adam_steps": adam_steps, "adam_acc": {str(k): g for k, g in adam_grids.items()},
                       "adam_mean": sum(adam_flat) / len(adam_flat), "adam_best": max(adam_flat),
                       "adam_seconds": round(adam_seconds, 1)})
    if out:
        _plot(result, trained, Path(out))
    return result


def _unseen(grids: Dict[int, List[List[float]]], ms: Sequence[float], hs: Sequence[int],
            trained: set) -> Dict[str, Any]:
    """Mean and best over the cells meta-training never grew (``cfg.trained_archs()``), overall and per kernel."""
    cells = {k: [g[i][j] for i, h in enumerate(hs) for j, m in enumerate(ms) if (m, k, h) not in trained]
             for k, g in grids.items()}
    flat = [v for vals in cells.values() for v in vals]
    if not flat:
        return {}
    return {"unseen_mean": sum(flat) / len(flat), "unseen_best": max(flat), "unseen_cells": len(flat),
            "unseen_mean_per_kernel": {str(k): sum(v) / len(v) for k, v in cells.items() if v}}


def _adam_accuracy(model: torch.nn.Module, train: Any, test: Any, steps: int, seed: int,
                   lr: float = 1e-3, batch_size: int = 64) -> float:
    """Test accuracy of ``model`` after ``steps`` Adam steps on random training batches (grad enabled)."""
    from neuralgraph.demo import _accuracy, adam_steps

    torch.manual_seed(seed)
    for mod in model.modules():  # a fresh default initialisation, seeded
        if hasattr(mod, "reset_parameters"):
            mod.reset_parameters()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    with torch.enable_grad():
        model.train()
        adam_steps(model, opt, *train, steps, torch.Generator().manual_seed(seed), batch_size)
    model.eval()
    return _accuracy(model, *test)


def _plot(result: Dict[str, Any], trained: set, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from neuralgraph.meta.plots import output_path

    ms, hs, ks = result["ms"], result["hs"], result["ks"]
    fig, axes = plt.subplots(1, len(ks), figsize=(1.5 + 1.1 * len(ms) * len(ks), 1.2 + 0.6 * len(hs)),
                             squeeze=False)
    for ax, k in zip(axes[0], ks):
        vals = result["acc"][str(k)]
        ax.imshow(vals, origin="lower", cmap="viridis", vmin=0.0, vmax=1.0)
        for iy, h in enumerate(hs):
            for ix, m in enumerate(ms):
                ax.text(ix, iy, f"{vals[iy][ix]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if vals[iy][ix] < 0.7 else "black")
                if (m, k, h) in trained:
                    ax.add_patch(Rectangle((ix - 0.5, iy - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5))
        ax.set_xticks(range(len(ms)), [_fmt(m) for m in ms])
        ax.set_yticks(range(len(hs)), [str(h) for h in hs])
        ax.set_xlabel("filter multiplier m")
        ax.set_ylabel("dense width h")
        ax.set_title(f"kernel {k}", fontsize=9)
    fig.suptitle(f"grown CNNs, {result.get('dataset', 'mnist')} {result.get('split', 'test')} acc after "
                 f"{result['steps']} rule steps (red: training archs)", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output_path(out, ".png"), dpi=90)
    plt.close(fig)
    output_path(out, ".json").write_text(json.dumps(result, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rule", default=None)
    parser.add_argument("--ms", type=float, nargs="+", default=[0.125, 0.25, 0.5, 1.0])
    parser.add_argument("--hs", type=int, nargs="+", default=[16, 32, 100, 200])
    parser.add_argument("--ks", type=int, nargs="+", default=[3, 4, 5])
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--dataset", default=None, help="mnist or fashion-mnist (default: the rule's dataset)")
    parser.add_argument("--adam-steps", type=int, default=0, help="also train each cell with Adam this long")
    parser.add_argument("--test-size", type=int, default=2000, help="images evaluated (the first N of the split)")
    parser.add_argument("--split", default="test", choices=["test", "val"],
                        help="test set, or the meta-trainer's validation images (to choose a snapshot)")
    parser.add_argument("--fire-rate", type=float, default=None,
                        help="fraction of edges updated per rule step (default: the rule's grow.fire_rate)")
    parser.add_argument("--code-tile", default=None, metavar="SPEC",
                        help="index hidden neurons modulo this reference CNN's widths (grow.code_tile)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="prefix for PNG + JSON")
    parser.add_argument("--quick", action="store_true", help="a 2x1x1 grid on 200 images")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.ms, args.hs, args.ks, args.test_size = [0.125, 0.25], [16], [4], 200
    res = run(args.rule, args.ms, args.hs, args.ks, args.steps, args.test_size, out=args.out,
              dataset=args.dataset, adam_steps=args.adam_steps, fire_rate=args.fire_rate, split=args.split,
              code_tile=args.code_tile)
    keys = ("dataset", "split", "mean", "best", "fraction_ge_95", "seconds", "adam_mean", "adam_best", "adam_seconds")
    print(json.dumps({k: res[k] for k in keys if k in res}))


if __name__ == "__main__":
    main()
