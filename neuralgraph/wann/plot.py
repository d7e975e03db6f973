r"""Plots: a WANN topology (networkx + matplotlib) and accuracy against the shared weight."""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

from neuralgraph.wann.activations import WANN_ACTIVATIONS
from neuralgraph.wann.dag import WANNGraph

__all__ = ["plot_topology", "plot_weight_sweep", "plot_input_usage", "plot_history"]


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_topology(graph: WANNGraph, path: str, title: Optional[str] = None,
                  input_names: Optional[Sequence[str]] = None) -> str:
    """Draw the enabled network by depth (inputs left, outputs right), nodes coloured by activation.

    Only inputs with an enabled outgoing edge are drawn; outputs are drawn in the last column.
    Small graphs (at most 60 drawn nodes) get input/bias/output labels (``input_names``
    default to ``x0, x1, ...``).
    """
    import networkx as nx

    plt = _plt()
    g = graph.to_networkx(enabled_only=True)
    used = {u for u, _ in g.edges()} | {v for _, v in g.edges()}
    roles = nx.get_node_attributes(g, "role")
    keep = [v for v in g.nodes if v in used or roles[v] == "output"]
    g = g.subgraph(keep).copy()
    depth = nx.get_node_attributes(g, "depth")
    out_col = max(depth.values(), default=1) + 1
    col = {v: (out_col if roles[v] == "output" else depth[v]) for v in g.nodes}
    pos: Dict[int, tuple] = {}
    for c in sorted(set(col.values())):
        vs = sorted(v for v in g.nodes if col[v] == c)
        for k, v in enumerate(vs):
            pos[v] = (c, (k - (len(vs) - 1) / 2) / max(len(vs), 1))
    cmap = plt.get_cmap("tab10")
    acts = nx.get_node_attributes(g, "act")
    colors = [cmap(WANN_ACTIVATIONS.index(acts[v]) % 10) if roles[v] in ("hidden", "output") else (0.7, 0.7, 0.7)
              for v in g.nodes]
    fig, ax = plt.subplots(figsize=(10, 7))
    nx.draw_networkx_edges(g, pos, ax=ax, alpha=0.25, arrows=False, width=0.5)
    nx.draw_networkx_nodes(g, pos, ax=ax, node_color=colors, node_size=25)
    if g.number_of_nodes() <= 60:
        names = list(input_names) if input_names is not None else [f"x{i}" for i in range(graph.num_inputs)]
        first_out = graph.num_inputs + 1
        labels = {v: (names[v] if roles[v] == "input" else "bias" if roles[v] == "bias" else f"out{v - first_out}")
                  for v in g.nodes if roles[v] != "hidden"}
        label_pos = {v: (x + (-0.2 if roles[v] in ("input", "bias") else 0.2), y) for v, (x, y) in pos.items()}
        nx.draw_networkx_labels(g, label_pos, labels=labels, ax=ax, font_size=8)
    for a in sorted({acts[v] for v in g.nodes if roles[v] in ("hidden", "output")}):
        ax.scatter([], [], color=cmap(WANN_ACTIVATIONS.index(a) % 10), label=a)
    ax.scatter([], [], color=(0.7, 0.7, 0.7), label="input / bias")
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    ax.set_title(title or repr(graph))
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_weight_sweep(weights: Sequence[float], accuracy: Sequence[float], path: str,
                      reference: Optional[Dict[str, float]] = None, title: str = "") -> str:
    """Accuracy against the shared weight value, with optional horizontal reference lines."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(np.asarray(weights), 100 * np.asarray(accuracy), "o-", ms=3, label="single shared weight")
    for k, (name, val) in enumerate((reference or {}).items()):
        ax.axhline(100 * val, ls="--", color=f"C{k + 1}", label=f"{name} ({100 * val:.1f}%)")
    ax.set_xlabel("shared weight value")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_input_usage(graph: WANNGraph, path: str, side: int = 16) -> str:
    """Heat map of how many enabled edges leave each input pixel (a receptive-field view)."""
    plt = _plt()
    src = graph.edge_index[0, graph.edge_enabled].numpy()
    n_in = graph.num_inputs
    counts = np.bincount(src[src < n_in], minlength=n_in)
    if n_in != side * side:
        raise ValueError(f"plot_input_usage: {n_in} inputs is not a {side}x{side} image")
    fig, ax = plt.subplots(figsize=(4, 4))
    im = ax.imshow(counts.reshape(side, side), cmap="viridis")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title("enabled edges per input pixel")
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_history(history: Sequence[Dict[str, float]], path: str, title: str = "WANN search") -> str:
    """Best mean / max fitness and connections of the best network per generation."""
    plt = _plt()
    gen = [h["generation"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(gen, [h["mean_fit_best"] for h in history], label="best mean fitness (over weights)")
    ax.plot(gen, [h["max_fit_best"] for h in history], label="best max fitness", alpha=0.7)
    ax.set_xlabel("generation")
    ax.set_ylabel("fitness")
    ax2 = ax.twinx()
    ax2.plot(gen, [h["connections_best"] for h in history], color="C2", alpha=0.5, label="connections (best)")
    ax2.set_ylabel("connections")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="lower right")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
