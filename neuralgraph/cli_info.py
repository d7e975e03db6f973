"""``neuralgraph info``: convert a model and describe its neural graph."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("info", help="convert a small demo CNN and print its neural graph")
    p.add_argument("--hidden-dim", type=int, default=16, help="hidden-state width H")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    import neuralgraph as ng

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 26 * 26, 10))
    graph = ng.to_neural_graph(model, hidden_dim=args.hidden_dim)
    print(model)
    print(graph)
    print(f"{graph.num_nodes} neurons, {graph.num_edges} edges "
          f"(= {sum(p.numel() for p in model.parameters())} parameters)")
    from neuralgraph import native

    native.load()
    print(f"fused CPU kernel: {native.status()}")
    return 0
