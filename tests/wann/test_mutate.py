import networkx as nx
import numpy as np

from neuralgraph.wann import WANNGraph, add_connection, add_node, change_activation, mutate, reenable
from neuralgraph.wann.dag import HIDDEN


def _all_edges_dag(g: WANNGraph) -> bool:
    d = nx.DiGraph()
    d.add_edges_from(map(tuple, g.edge_index.t().tolist()))
    return nx.is_directed_acyclic_graph(d)


def test_mutations_keep_dags_acyclic():
    rng = np.random.default_rng(0)
    for _ in range(6):
        g = WANNGraph.minimal(4, 2, 0.3, rng=rng)
        for _ in range(60):
            g = mutate(g, rng, (0.5, 0.2, 0.2, 0.1))
            assert _all_edges_dag(g)  # disabled edges included
        assert g.validate() and g.num_hidden > 0
        ei = g.edge_index.t().tolist()
        assert len(ei) == len({tuple(e) for e in ei})  # no duplicate edges


def test_each_mutation_does_what_it_says():
    rng = np.random.default_rng(1)
    g = WANNGraph.minimal(3, 2, 1.0, rng=rng)
    h = add_node(g, rng)
    assert h.num_hidden == 1 and h.num_connections == g.num_connections + 1
    assert h.edge_index.size(1) == g.edge_index.size(1) + 2 and int((~h.edge_enabled).sum()) == 1
    new = h.num_nodes - 1
    assert int(h.node_role[new]) == HIDDEN
    c = change_activation(h, rng)
    assert int(c.node_act[new]) != int(h.node_act[new])
    r = reenable(h, rng)
    assert r.num_connections == h.num_connections + 1
    a = add_connection(h, rng)
    assert a is not None and a.num_connections == h.num_connections + 1
    assert change_activation(g, rng) is None  # no hidden node
    assert reenable(g, rng) is None  # nothing disabled
    full = WANNGraph.minimal(2, 1, 1.0, rng=rng)
    assert add_connection(full, rng) is None  # every input -> output edge exists
