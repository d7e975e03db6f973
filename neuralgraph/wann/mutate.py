r"""WANN topology mutations; every one keeps the graph a DAG.

Acyclicity is checked over *all* genome edges, enabled or not, so that
re-enabling an edge can never close a cycle.  Mutations return new graphs
that may share unchanged tensors with their parent: treat graphs as immutable.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from neuralgraph.wann.activations import WANN_ACTIVATIONS
from neuralgraph.wann.dag import BIAS, HIDDEN, INPUT, OUTPUT, WANNGraph

__all__ = ["MUTATIONS", "add_connection", "add_node", "change_activation", "reenable", "mutate"]

#: Mutation names, in the order of the probabilities passed to :func:`mutate`.
MUTATIONS = ("add_connection", "add_node", "change_activation", "reenable")

_ALL_ACTS = tuple(range(len(WANN_ACTIVATIONS)))


def _arrays(g: WANNGraph) -> tuple:
    return (g.edge_index.numpy(), g.edge_enabled.numpy(), g.node_act.numpy(), g.node_role.numpy())


def _ancestors(ei: np.ndarray, node: int, num_nodes: int) -> np.ndarray:
    """Boolean mask of nodes with a path to ``node`` (``node`` included)."""
    mask = np.zeros(num_nodes, dtype=bool)
    mask[node] = True
    src, dst = ei
    while True:
        new = mask.copy()
        new[src[mask[dst]]] = True
        if np.array_equal(new, mask):
            return mask
        mask = new


def add_connection(g: WANNGraph, rng: np.random.Generator, tries: int = 8) -> Optional[WANNGraph]:
    """Add an enabled edge ``u -> v`` (u input/bias/hidden, v hidden/output) that closes no cycle.

    Returns ``None`` when no new edge was found in ``tries`` source draws.
    """
    ei, en, act, role = _arrays(g)
    n = role.size
    sources = np.nonzero((role == INPUT) | (role == BIAS) | (role == HIDDEN))[0]
    targets = (role == HIDDEN) | (role == OUTPUT)
    for _ in range(tries):
        u = int(rng.choice(sources))
        ok = targets.copy()
        ok[ei[1, ei[0] == u]] = False  # existing edges, enabled or not
        if role[u] == HIDDEN:
            ok &= ~_ancestors(ei, u, n)
        cand = np.nonzero(ok)[0]
        if cand.size:
            v = int(rng.choice(cand))
            return WANNGraph.from_arrays(np.concatenate([ei, [[u], [v]]], axis=1), np.append(en, True), act, role)
    return None


def add_node(g: WANNGraph, rng: np.random.Generator, acts: Sequence[int] = _ALL_ACTS) -> Optional[WANNGraph]:
    """Split a random enabled edge ``u -> v`` into ``u -> new -> v`` (the old edge is disabled)."""
    ei, en, act, role = _arrays(g)
    live = np.nonzero(en)[0]
    if live.size == 0:
        return None
    e = int(rng.choice(live))
    u, v = int(ei[0, e]), int(ei[1, e])
    new = role.size
    en = en.copy()
    en[e] = False
    ei = np.concatenate([ei, [[u, new], [new, v]]], axis=1)
    return WANNGraph.from_arrays(ei, np.append(en, [True, True]), np.append(act, int(rng.choice(acts))),
                                 np.append(role, HIDDEN))


def change_activation(g: WANNGraph, rng: np.random.Generator,
                      acts: Sequence[int] = _ALL_ACTS) -> Optional[WANNGraph]:
    """Give a random hidden node a different activation."""
    ei, en, act, role = _arrays(g)
    hidden = np.nonzero(role == HIDDEN)[0]
    if hidden.size == 0:
        return None
    v = int(rng.choice(hidden))
    choices = [a for a in acts if a != act[v]]
    if not choices:
        return None
    act = act.copy()
    act[v] = int(rng.choice(choices))
    return WANNGraph.from_arrays(ei, en, act, role)


def reenable(g: WANNGraph, rng: np.random.Generator) -> Optional[WANNGraph]:
    """Enable a random disabled edge."""
    ei, en, act, role = _arrays(g)
    off = np.nonzero(~en)[0]
    if off.size == 0:
        return None
    en = en.copy()
    en[int(rng.choice(off))] = True
    return WANNGraph.from_arrays(ei, en, act, role)


def mutate(g: WANNGraph, rng: np.random.Generator, probs: Sequence[float] = (0.2, 0.25, 0.5, 0.05),
           acts: Sequence[int] = _ALL_ACTS) -> WANNGraph:
    """Apply one mutation drawn with ``probs`` over :data:`MUTATIONS` (normalised).

    If the drawn mutation is impossible (e.g. no hidden node to change), the
    others are tried in random order; if none applies, ``g`` is returned.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.shape != (len(MUTATIONS),) or (p < 0).any() or p.sum() <= 0:
        raise ValueError(f"mutation probs must be {len(MUTATIONS)} non-negative numbers "
                         f"for {MUTATIONS}, got {list(probs)}")
    first = int(rng.choice(len(MUTATIONS), p=p / p.sum()))
    rest = [int(i) for i in rng.permutation(len(MUTATIONS)) if i != first and p[i] > 0]
    for k in [first] + rest:
        if k == 0:
            out = add_connection(g, rng)
        elif k == 1:
            out = add_node(g, rng, acts)
        elif k == 2:
            out = change_activation(g, rng, acts)
        else:
            out = reenable(g, rng)
        if out is not None:
            return out
    return g
