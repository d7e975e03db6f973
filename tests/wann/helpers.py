"""Slow per-node reference and random DAGs for the WANN tests."""

from __future__ import annotations

from typing import Dict, List

import numpy as np
import torch
from torch import Tensor

from neuralgraph.wann import WANNGraph, mutate
from neuralgraph.wann.activations import apply_activation


def reference_forward(g: WANNGraph, x: Tensor, w: float) -> Tensor:
    """Recursive node-by-node evaluation: ``h_v = f_v(w * sum of enabled parents)``; ``[B, O]``."""
    role, act = g.node_role.tolist(), g.node_act.tolist()
    src, dst = g.edge_index.tolist()
    en = g.edge_enabled.tolist()
    parents: Dict[int, List[int]] = {}
    for a, b, e in zip(src, dst, en):
        if e:
            parents.setdefault(b, []).append(a)
    i = g.num_inputs
    val: Dict[int, Tensor] = {k: x[:, k] for k in range(i)}
    val[i] = torch.ones(x.size(0), dtype=x.dtype)

    def get(v: int) -> Tensor:
        if v not in val:
            s = torch.zeros(x.size(0), dtype=x.dtype)
            for a in parents.get(v, []):
                s = s + w * get(a)
            val[v] = apply_activation(act[v], s)
        return val[v]

    return torch.stack([get(v) for v in range(g.num_nodes) if role[v] == 2], dim=1)


def random_dag(rng: np.random.Generator, num_inputs: int = 5, num_outputs: int = 3, mutations: int = 25,
               p_enable: float = 0.5) -> WANNGraph:
    g = WANNGraph.minimal(num_inputs, num_outputs, p_enable, rng=rng)
    for _ in range(mutations):
        g = mutate(g, rng, (0.35, 0.3, 0.25, 0.1))
    return g
