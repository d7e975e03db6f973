"""Slow, obviously-correct reference implementations (for tests only).

Every fast path in neuralgraph is checked against one of these: neighbourhoods
found by looping over all edges, rules evaluated edge by edge with an explicit
``d x d`` state per edge and per head.  They are ``O(|E|^2)``: use graphs of a
few hundred edges.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor

__all__ = [
    "brute_force_neighbourhoods",
    "reference_edge_correlations",
    "reference_mlp_rule",
    "reference_weight_transformer",
    "rotate_loop",
]


def brute_force_neighbourhoods(edge_index: Tensor) -> Tuple[List[List[int]], List[List[int]]]:
    """For every edge, the sorted edge ids of its forward and backward neighbourhoods."""
    src, dst = edge_index.tolist()
    n = len(src)
    fwd = [[f for f in range(n) if src[f] == dst[e]] for e in range(n)]
    bwd = [[f for f in range(n) if dst[f] == src[e]] for e in range(n)]
    return fwd, bwd


def reference_edge_correlations(graph: object, x: Tensor, target: Optional[Tensor] = None,
                                eps: float = 1e-4) -> Tensor:
    """:func:`~neuralgraph.functional.edge_correlations` edge by edge, from per-sample neuron
    activities recorded with forward hooks on the rebuilt ``nn.Sequential`` (``graph.weight``)."""
    from neuralgraph.convert import to_module

    model = to_module(graph)  # type: ignore[arg-type]
    model.eval()
    layers: List[Tensor] = [x.flatten(1)]  # per-sample activity of each neuron layer
    with torch.no_grad():
        y = x
        for m in model:
            y = m(y)
            if isinstance(m, torch.nn.Linear):
                layers.append(y)
            elif not isinstance(m, torch.nn.Dropout):
                layers[-1] = y.flatten(1)
    if target is not None:
        layers[-1] = torch.nn.functional.one_hot(target, layers[-1].size(1)).to(x.dtype) \
            if target.dim() == 1 else target.to(x.dtype)
    lay, pos, role = (graph.node_layer.tolist(), graph.node_pos.tolist(),  # type: ignore[attr-defined]
                      graph.node_role.tolist())  # type: ignore[attr-defined]

    def activity(node: int) -> Optional[Tensor]:
        return None if role[node] == 3 else layers[lay[node]][:, pos[node]]  # 3: bias neuron

    src, dst = graph.edge_index.tolist()  # type: ignore[attr-defined]
    out = torch.zeros(len(src), dtype=x.dtype)
    for e in range(len(src)):
        a, b = activity(src[e]), activity(dst[e])
        if a is None:
            continue
        ca, cb = a - a.mean(), b - b.mean()
        out[e] = (ca * cb).mean() / torch.sqrt((ca.pow(2).mean() + eps) * (cb.pow(2).mean() + eps))
    return out


def _hooked_activations(graph: object, x: Tensor) -> Tensor:
    """Mean activation of every neuron ``[|V|]`` from the rebuilt ``nn.Sequential``, layer by
    layer: a parametrised layer's output after the parameter-free modules that follow it up
    to a ``Flatten``, averaged over the batch and space; inputs get the mean input, bias
    neurons ``1`` (the definition of :func:`~neuralgraph.functional.node_activations`)."""
    from neuralgraph.convert import to_module

    def summary(t: Tensor) -> Tensor:
        return t.mean(0) if t.dim() == 2 else t.mean(dim=[0] + list(range(2, t.dim())))

    model = to_module(graph)  # type: ignore[arg-type]
    model.eval()
    layers: List[Tensor] = [summary(x)]
    frozen = False
    y = x
    for m in model:
        y = m(y)
        if any(True for _ in m.parameters(recurse=False)):  # Linear, Conv1d/2d/...
            layers.append(summary(y))
            frozen = False
        elif isinstance(m, torch.nn.Flatten):
            frozen = True
        elif not frozen and not isinstance(m, torch.nn.Dropout):
            layers[-1] = summary(y)
    lay, pos, role = (graph.node_layer.tolist(), graph.node_pos.tolist(),  # type: ignore[attr-defined]
                      graph.node_role.tolist())  # type: ignore[attr-defined]
    return torch.stack([torch.ones((), dtype=x.dtype) if role[v] == 3 else layers[lay[v]][pos[v]]
                        for v in range(len(lay))])


def reference_mlp_rule(rule: torch.nn.Module, graph: object, x: Optional[Tensor] = None,
                       y: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """:class:`~neuralgraph.rules.MLPRule` evaluated edge by edge (neighbourhood means weighted by the
    graph's ``neighbour_weight`` if it has one: column 0 in forward, column 1 in backward neighbourhoods)."""
    w, h = graph.weight, graph.hidden  # type: ignore[attr-defined]
    state = torch.cat([w.unsqueeze(-1), h], -1)
    fwd, bwd = brute_force_neighbourhoods(graph.edge_index)  # type: ignore[attr-defined]
    nw = _neighbour_weight(graph)
    act = corr = None
    if x is not None:
        from neuralgraph.functional import node_activations

        act = node_activations(graph, x)
        if getattr(rule, "coactivation", None):
            corr = reference_edge_correlations(graph, x, y if rule.coactivation == "labels" else None)
    src, dst = graph.edge_index.tolist()  # type: ignore[attr-defined]
    rows = []
    for e in range(w.numel()):
        mf, mb = (_weighted_mean(state, members, nw[:, col]) if members else torch.zeros_like(state[e])
                  for members, col in ((fwd[e], 0), (bwd[e], 1)))
        parts = [state[e], mf, mb]
        if act is not None:
            parts += [act[src[e]].view(1), act[dst[e]].view(1)]
        if corr is not None:
            parts.append(corr[e].view(1))
        rows.append(torch.cat(parts))
    out = rule.mlp(torch.stack(rows)) * rule.update_scale  # type: ignore[attr-defined]
    return out[:, 0], out[:, 1:]


def _neighbour_weight(graph: object) -> Tensor:
    """The graph's ``neighbour_weight [E, 2]``, or all ones."""
    nw = getattr(graph, "neighbour_weight", None)
    w = graph.weight  # type: ignore[attr-defined]
    return torch.ones(w.numel(), 2, dtype=w.dtype) if nw is None else nw


def _weighted_mean(state: Tensor, members: List[int], weight: Tensor) -> Tensor:
    """``sum_g weight[g] state[g] / sum_g weight[g]`` over the listed edges, one by one (zero when the
    weights sum to zero)."""
    num = torch.zeros_like(state[0])
    den = torch.zeros((), dtype=state.dtype)
    for g in members:
        num = num + weight[g] * state[g]
        den = den + weight[g]
    return num / den if den > 0 else torch.zeros_like(num)


def rotate_loop(x: Tensor, pos: float, head_dim: int, base: float) -> Tensor:
    """RoPE of one head vector ``x [d]`` at scalar position ``pos``, pair by pair."""
    out = x.clone()
    for j in range(head_dim // 2):
        theta = pos * base ** (-2.0 * j / head_dim)
        c, s = torch.cos(torch.tensor(theta, dtype=x.dtype)), torch.sin(torch.tensor(theta, dtype=x.dtype))
        out[2 * j] = x[2 * j] * c - x[2 * j + 1] * s
        out[2 * j + 1] = x[2 * j] * s + x[2 * j + 1] * c
    return out


def reference_weight_transformer(rule: torch.nn.Module, graph: object,
                                 x: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """:class:`~neuralgraph.rules.WeightTransformer` evaluated edge by edge.

    For every edge and head, the neighbourhood's ``d x d`` state
    :math:`\\sum_g \\tilde k_g v_g^\\top` is built explicitly from the members
    listed by :func:`brute_force_neighbourhoods`.  A data-conditioned rule reads
    the activations of the network rebuilt by ``to_module()`` on ``x`` (forward
    hooks, :func:`_hooked_activations`), so the reference shares no activation code
    with the rule.  A graph's ``neighbour_weight`` weighs each member's key (column 0 in forward,
    column 1 in backward neighbourhoods).
    """
    r = rule
    nw = _neighbour_weight(graph)
    w, h = graph.weight, graph.hidden  # type: ignore[attr-defined]
    pos = graph.edge_pos.to(w.dtype)  # type: ignore[attr-defined]
    state = torch.cat([w.unsqueeze(-1), h], -1)
    n, heads, d = w.numel(), r.heads, r.head_dim  # type: ignore[attr-defined]
    elu1 = lambda t: torch.nn.functional.elu(t) + 1  # noqa: E731
    kf, kb, vf, vb = r.kv(state).view(n, 4, heads, d).unbind(1)  # type: ignore[operator]
    qf, qb, u = r.qu(state).view(n, 3, heads * d).unbind(1)  # type: ignore[operator]
    qf, qb = qf.reshape(n, heads, d), qb.reshape(n, heads, d)
    kf, kb, qf, qb = elu1(kf), elu1(kb), elu1(qf), elu1(qb)
    axes = r.active_axes  # type: ignore[attr-defined]

    def rot(t: Tensor, e: int, hh: int) -> Tensor:
        a = axes[hh]
        return t if a < 0 else rotate_loop(t, float(pos[e, a]), d, r.rope_base)  # type: ignore[attr-defined]

    fwd, bwd = brute_force_neighbourhoods(graph.edge_index)  # type: ignore[attr-defined]
    att = []
    for e in range(n):
        per_dir = []
        for q, k, v, members, col in ((qf, kf, vf, fwd[e], 0), (qb, kb, vb, bwd[e], 1)):
            heads_out = []
            for hh in range(heads):
                s = torch.zeros(d, d, dtype=w.dtype)
                z = torch.zeros(d, dtype=w.dtype)
                for g in members:
                    s = s + nw[g, col] * torch.outer(rot(k[g, hh], g, hh), v[g, hh])
                    z = z + nw[g, col] * k[g, hh]
                num = rot(q[e, hh], e, hh) @ s
                if r.normalize:  # type: ignore[attr-defined]
                    num = num / (q[e, hh] @ z + r.eps)  # type: ignore[attr-defined]
                heads_out.append(num)
            per_dir.append(torch.cat(heads_out))
        att.append(torch.cat(per_dir))
    z_all = u + r.proj(torch.stack(att))  # type: ignore[operator]
    if getattr(r, "data_conditioned", False):
        if x is None:
            raise ValueError("reference_weight_transformer: a data-conditioned rule needs x")
        act = _hooked_activations(graph, x)
        src, dst = graph.edge_index  # type: ignore[attr-defined]
        for e in range(n):
            z_all[e] = z_all[e] + r.data_proj(torch.stack([act[int(src[e])], act[int(dst[e])]]))  # type: ignore

    z_all = z_all + r.ff(r.norm1(z_all))  # type: ignore[operator]
    out = torch.tanh(r.head(r.norm2(z_all))) * r.update_scale  # type: ignore[operator]
    return out[:, 0], out[:, 1:]
