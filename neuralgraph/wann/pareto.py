r"""Pareto ranking (NSGA-II style) used by the WANN search: fronts, then crowding distance."""

from __future__ import annotations

from typing import List

import numpy as np

__all__ = ["nondominated_fronts", "crowding_distance", "pareto_rank"]


def nondominated_fronts(objs: np.ndarray) -> List[np.ndarray]:
    """Split individuals into non-dominated fronts (all objectives maximised).

    ``a`` dominates ``b`` when it is ``>=`` in every objective and ``>`` in one.

    Shapes:
        - **input:** ``[P, K]``; **output:** list of index arrays, best front first
    """
    objs = np.asarray(objs, dtype=np.float64)
    if objs.ndim != 2:
        raise ValueError(f"objectives must be [P, K], got shape {objs.shape}")
    ge = (objs[:, None, :] >= objs[None, :, :]).all(-1)
    gt = (objs[:, None, :] > objs[None, :, :]).any(-1)
    dom = np.asarray(ge & gt)  # dom[a, b]: a dominates b
    n_dom = dom.sum(0)  # how many dominate each
    fronts, left = [], np.ones(objs.shape[0], dtype=bool)
    while left.any():
        front = np.nonzero(left & (n_dom == 0))[0]
        fronts.append(front)
        left[front] = False
        n_dom = n_dom - dom[front].sum(0)
    return fronts


def crowding_distance(objs: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance within one front (boundary points get ``inf``)."""
    objs = np.asarray(objs, dtype=np.float64)
    n, k = objs.shape
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(k):
        order = np.argsort(objs[:, j], kind="stable")
        v = objs[order, j]
        span = v[-1] - v[0]
        dist[order[0]] = dist[order[-1]] = np.inf
        if span > 0:
            dist[order[1:-1]] += (v[2:] - v[:-2]) / span
    return dist


def pareto_rank(objs: np.ndarray) -> np.ndarray:
    """Rank of every individual (0 best): by front, then by decreasing crowding distance.

    Shapes:
        - **input:** ``[P, K]``; **output:** ``[P]`` a permutation of ``0..P-1``
    """
    order: List[int] = []
    for front in nondominated_fronts(objs):
        cd = crowding_distance(np.asarray(objs, dtype=np.float64)[front])
        order += front[np.argsort(-cd, kind="stable")].tolist()
    rank = np.empty(len(order), dtype=np.int64)
    rank[np.asarray(order, dtype=np.int64)] = np.arange(len(order))
    return rank
