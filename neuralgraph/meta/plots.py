"""Matplotlib (Agg) figures: accuracy heatmaps, weight evolution, accuracy curves."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

__all__ = ["grid_heatmap", "weight_evolution", "curves", "output_path"]


def output_path(prefix: str | Path, ext: str) -> Path:
    """``prefix`` + ``ext`` (``".png"``, ``".json"``) for an ``--out PREFIX`` option.  A prefix that already
    ends in ``.png`` or ``.json`` has that suffix replaced; any other dot is part of the name
    (``runs/grid_m0.5`` -> ``runs/grid_m0.5.json``, where ``Path.with_suffix`` would give ``runs/grid_m0.json``)."""
    prefix = Path(prefix)
    if prefix.suffix in (".png", ".json"):
        return prefix.with_suffix(ext)
    return prefix.with_name(prefix.name + ext)


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def grid_heatmap(values: Sequence[Sequence[float]], xs: Sequence[int], ys: Sequence[int],
                 outlined: Sequence[Tuple[int, int]], path: str | Path, title: str = "") -> None:
    """Heatmap ``values[iy][ix]`` (rows = Y, bottom-up), training cells outlined in red."""
    plt = _plt()
    from matplotlib.patches import Rectangle

    fig, ax = plt.subplots(figsize=(2.5 + 0.8 * len(xs), 1.4 + 0.6 * len(ys)))
    im = ax.imshow(values, origin="lower", cmap="viridis", vmin=min(min(r) for r in values),
                   vmax=max(max(r) for r in values))
    for iy in range(len(ys)):
        for ix in range(len(xs)):
            v = values[iy][ix]
            ax.text(ix, iy, f"{v:.3f}", ha="center", va="center", fontsize=7,
                    color="white" if v < 0.5 * (min(min(r) for r in values) + max(max(r) for r in values))
                    else "black")
    for x, y in outlined:
        if x in xs and y in ys:
            ax.add_patch(Rectangle((list(xs).index(x) - 0.5, list(ys).index(y) - 0.5), 1, 1, fill=False,
                                   edgecolor="red", linewidth=2.5))
    ax.set_xticks(range(len(xs)), [str(x) for x in xs])
    ax.set_yticks(range(len(ys)), [str(y) for y in ys])
    ax.set_xlabel("X (first hidden width)")
    ax.set_ylabel("Y (second hidden width)")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label="test accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def weight_evolution(steps: Sequence[int], weights: Sequence[Sequence[float]], layers: Sequence[int],
                     acc: Sequence[float], path: str | Path, title: str = "") -> None:
    """Traces of tracked edge weights over rule steps (coloured by layer) above the accuracy."""
    plt = _plt()
    fig, (a0, a1) = plt.subplots(2, 1, figsize=(6, 5), sharex=True, height_ratios=[3, 1])
    cols = plt.get_cmap("tab10")
    series = list(zip(*weights)) if weights else []
    for j, trace in enumerate(series):
        a0.plot(steps, trace, color=cols(layers[j] % 10), lw=0.8, alpha=0.7)
    a0.set_ylabel("weight (colour = layer)")
    a0.set_title(title, fontsize=9)
    a1.plot(steps, acc, color="k")
    a1.set_ylabel("accuracy")
    a1.set_xlabel("rule step")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def curves(series: Dict[str, Tuple[Sequence[float], Sequence[float]]], path: str | Path, xlabel: str,
           ylabel: str, title: str = "", vlines: Optional[List[float]] = None, logy: bool = False) -> None:
    """Line plot of named ``(x, y)`` series."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, (x, y) in series.items():
        ax.plot(x, y, label=name, lw=1.2)
    for v in vlines or []:
        ax.axvline(v, color="red", ls="--", lw=1)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
