"""Export neural graphs to networkx."""

from __future__ import annotations

import networkx as nx

from neuralgraph.architecture import ACTIVATIONS
from neuralgraph.graph import EDGE_KINDS, NODE_ROLES, NeuralGraph

__all__ = ["to_networkx"]


def to_networkx(graph: NeuralGraph, hidden: bool = False) -> nx.MultiDiGraph:
    """A ``networkx.MultiDiGraph`` with one edge per parameter.

    Node attributes: ``layer``, ``pos``, ``act`` (name), ``role`` (name).
    Edge attributes (edge keys are the edge ids, i.e. parameter positions):
    ``weight``, ``layer``, ``pos`` (5-tuple), ``kind`` (name) and, with
    ``hidden=True``, ``hidden`` (list of floats).
    """
    g = nx.MultiDiGraph()
    layer, pos = graph.node_layer.tolist(), graph.node_pos.tolist()
    act, role = graph.node_act.tolist(), graph.node_role.tolist()
    g.add_nodes_from(
        (i, {"layer": layer[i], "pos": pos[i], "act": ACTIVATIONS[act[i]], "role": NODE_ROLES[role[i]]})
        for i in range(graph.num_nodes))
    src, dst = graph.edge_index.tolist()
    w = graph.weight.detach().tolist()
    epos = [tuple(p) for p in graph.edge_pos.tolist()]
    kind = graph.edge_kind.tolist()
    hid = graph.hidden.detach().tolist() if hidden else None
    g.add_edges_from(
        (src[e], dst[e], e, {"weight": w[e], "layer": epos[e][0], "pos": epos[e],
                             "kind": EDGE_KINDS[kind[e]], **({"hidden": hid[e]} if hid else {})})
        for e in range(len(src)))
    return g
