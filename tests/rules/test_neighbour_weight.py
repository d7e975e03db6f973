"""Weighted neighbourhood aggregation (``graph.neighbour_weight``): every path of both rules against the
per-edge reference loops of :mod:`neuralgraph.reference`."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch

import neuralgraph as ng
from neuralgraph.reference import reference_mlp_rule, reference_weight_transformer
from neuralgraph.rules import MLPRule, WeightTransformer, fused
from neuralgraph.testing import random_cnn, random_mlp


def _rule(kind: str, hidden: int = 6) -> nn.Module:
    torch.manual_seed(0)
    rule = MLPRule(hidden, width=16) if kind == "mlp" else WeightTransformer(hidden, heads=2, head_dim=4,
                                                                              ff_dim=16, head_width=16)
    for p in rule.parameters():
        nn.init.normal_(p, std=0.3)
    return rule


def _graph(seed: int, cnn: bool, hidden: int = 6, weighted: bool = True) -> ng.NeuralGraph:
    g = torch.Generator().manual_seed(seed)
    model, shape = random_cnn(g, max_conv=2, max_channels=3, max_dense=2) if cnn else random_mlp(g, max_width=8)
    graph = ng.to_neural_graph(model, hidden_dim=hidden, input_shape=shape)
    graph.hidden = torch.randn(graph.hidden.shape, generator=g)
    graph.weight = torch.randn(graph.weight.shape, generator=g)
    if weighted:
        graph.neighbour_weight = 0.1 + 2 * torch.rand(graph.num_edges, 2, generator=g)
    return graph


def _double(graph: ng.NeuralGraph) -> ng.NeuralGraph:
    g = graph.clone()
    g.weight, g.hidden, g.neighbour_weight = graph.weight.double(), graph.hidden.double(), \
        graph.neighbour_weight.double()
    return g


def _paths(rule: nn.Module, graph: object) -> dict:
    """The rule's outputs on every path it has: autograd, no-grad PyTorch, no-grad fused kernel."""
    out = {"autograd": tuple(t.detach() for t in rule(graph))}
    flag = rule.native
    try:
        rule.native = False
        with torch.no_grad():
            out["no_grad"] = rule(graph)
        if fused.available():
            rule.native = True
            with torch.no_grad():
                out["fused"] = rule(graph)
    finally:
        rule.native = flag
    return out


@pytest.mark.parametrize("kind", ["mlp", "wt"])
@pytest.mark.parametrize("cnn", [False, True])
@pytest.mark.parametrize("seed", range(2))
def test_weighted_rules_match_the_per_edge_reference(kind: str, cnn: bool, seed: int) -> None:
    graph = _graph(seed, cnn)
    rule = _rule(kind)
    ref = reference_mlp_rule if kind == "mlp" else reference_weight_transformer
    rw, rh = ref(rule.double(), _double(graph))
    rule.float()
    paths = _paths(rule, graph)
    assert len(paths) == (3 if fused.available() else 2)
    for name, (dw, dh) in paths.items():
        torch.testing.assert_close(dw.double(), rw, atol=1e-5, rtol=1e-4, msg=name)
        torch.testing.assert_close(dh.double(), rh, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("kind", ["mlp", "wt"])
@pytest.mark.parametrize("cnn", [False, True])
def test_zero_weights_leave_edges_out(kind: str, cnn: bool) -> None:
    """A weight of 0 leaves an edge out of a sum (``code_tile`` zeroes the taps a smaller reference kernel
    lacks), on every path against the reference; a neighbourhood whose weights are all 0 aggregates to
    zero, as an empty one.  Changing a left-out edge's state then changes no other edge's update."""
    graph = _graph(5, cnn)
    g = torch.Generator().manual_seed(1)
    out = torch.rand(graph.num_edges, generator=g) < 0.3
    graph.neighbour_weight[out] = 0.0
    src = graph.edge_index[0]
    graph.neighbour_weight[src == src[0], 0] = 0.0  # one whole forward neighbourhood
    rule = _rule(kind)
    ref = reference_mlp_rule if kind == "mlp" else reference_weight_transformer
    rw, rh = ref(rule.double(), _double(graph))
    rule.float()
    for name, (dw, dh) in _paths(rule, graph).items():
        torch.testing.assert_close(dw.double(), rw, atol=1e-5, rtol=1e-4, msg=name)
        torch.testing.assert_close(dh.double(), rh, atol=1e-5, rtol=1e-4, msg=name)
    left_out = out & (graph.neighbour_weight == 0).all(1)
    assert int(left_out.sum()) > 0
    with torch.no_grad():
        w0, h0 = rule(graph)
        graph.weight = torch.where(left_out, graph.weight + 3.0, graph.weight)
        graph.hidden = graph.hidden + 2.0 * left_out.unsqueeze(1)
        w1, h1 = rule(graph)
    torch.testing.assert_close(w1[~left_out], w0[~left_out], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(h1[~left_out], h0[~left_out], atol=1e-5, rtol=1e-4)
    assert (w1[left_out] - w0[left_out]).abs().max() > 1e-3


@pytest.mark.parametrize("kind", ["mlp", "wt"])
def test_unit_weights_are_the_plain_aggregation(kind: str) -> None:
    """All ones is the plain aggregation on every path; other weights give another update."""
    graph = _graph(3, cnn=True)
    rule = _rule(kind)
    with torch.no_grad():
        random_w, _ = rule(graph)
    graph.neighbour_weight = torch.ones(graph.num_edges, 2)
    ones = _paths(rule, graph)
    del graph.neighbour_weight
    plain = _paths(rule, graph)
    for name in plain:
        torch.testing.assert_close(ones[name][0], plain[name][0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(ones[name][1], plain[name][1], atol=1e-5, rtol=1e-4)
    assert (random_w - plain["no_grad"][0]).abs().max() > 0.05 * plain["no_grad"][0].abs().max()


@pytest.mark.parametrize("kind", ["mlp", "wt"])
def test_weighted_batch_equals_its_graphs(kind: str) -> None:
    graphs = [_graph(s, cnn=s % 2 == 1) for s in range(3)]
    rule = _rule(kind)
    with torch.no_grad():
        bw, bh = rule(Batch.from_data_list(graphs))
        one = [rule(g) for g in graphs]
    torch.testing.assert_close(bw, torch.cat([w for w, _ in one]), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(bh, torch.cat([h for _, h in one]), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ["mlp", "wt"])
def test_bad_neighbour_weight_is_an_error(kind: str) -> None:
    graph = _graph(0, cnn=False)
    rule = _rule(kind)
    name = "MLPRule" if kind == "mlp" else "WeightTransformer"
    graph.neighbour_weight = torch.ones(graph.num_edges, 3)
    with pytest.raises(ValueError, match=rf"{name}: graph.neighbour_weight must be a .* \[{graph.num_edges}, 2\]"):
        rule(graph)
    graph.neighbour_weight = torch.ones(graph.num_edges, 2)
    for bad in (-0.5, float("nan"), float("inf")):
        graph.neighbour_weight = torch.ones(graph.num_edges, 2)
        graph.neighbour_weight[4, 1] = bad
        with pytest.raises(ValueError, match=f"{name}: graph.neighbour_weight must be finite and non-negative"):
            rule(graph)
    if kind == "wt" and fused.available():  # the kernel's entry point checks too: it reads [E][2] floats
        graph.neighbour_weight = torch.ones(graph.num_edges - 1, 2)
        with pytest.raises(ValueError, match="fused.wt_forward: graph.neighbour_weight must be"):
            fused.wt_forward(_rule("wt"), graph, workers=1)


@pytest.mark.parametrize("kind", ["mlp", "wt"])
@pytest.mark.parametrize("order", [(0, 1, 2), (1, 0, 2), (1, 2, 0)])
def test_batch_graphs_mixes_weighted_and_plain_graphs(kind: str, order: tuple) -> None:
    """PyG alone drops ``neighbour_weight`` when the first graph lacks it (and raises ``KeyError`` the other
    way round); ``ng.batch_graphs`` gives the plain graphs all ones, so the batch's update is each graph's
    own, in every order."""
    graphs = [_graph(0, cnn=False), _graph(1, cnn=True, weighted=False), _graph(2, cnn=True)]
    graphs = [graphs[i] for i in order]
    rule = _rule(kind)
    batch = ng.batch_graphs(graphs)
    assert batch.neighbour_weight.shape == (sum(g.num_edges for g in graphs), 2)
    assert all(getattr(g, "neighbour_weight", None) is not None for g in graphs if g is not graphs[order.index(1)])
    assert getattr(graphs[order.index(1)], "neighbour_weight", None) is None  # not modified
    with torch.no_grad():
        bw, bh = rule(batch)
        one = [rule(g) for g in graphs]
    torch.testing.assert_close(bw, torch.cat([w for w, _ in one]), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(bh, torch.cat([h for _, h in one]), atol=1e-5, rtol=1e-4)
    if order[0] == 1:  # what PyG does on its own: the weights of the later graphs are gone
        assert getattr(Batch.from_data_list(graphs), "neighbour_weight", None) is None
    with pytest.raises(ValueError, match="no graphs"):
        ng.batch_graphs([])
