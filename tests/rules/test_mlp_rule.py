"""MLPRule against its slow reference, batching, equivariance."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import neuralgraph as ng
from neuralgraph.reference import reference_mlp_rule
from neuralgraph.rules import MLPRule
from tests.rules.helpers import assert_batched_equals_unbatched, small_batch, small_graph
from tests.rules.smoke import smoketest_rule


def _random_rule(**kw: object) -> MLPRule:
    rule = MLPRule(4, width=16, chunk_size=37, **kw).double()
    torch.manual_seed(0)
    for p in rule.parameters():
        nn.init.normal_(p, std=0.3)
    return rule


def test_smoke() -> None:
    graph, _ = small_graph(1)
    smoketest_rule(MLPRule(4, width=8).double(), graph, "MLPRule(4, width=8, depth=2, data_conditioned=False)")


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("data_conditioned", [False, True])
def test_matches_reference(seed: int, data_conditioned: bool) -> None:
    graph, shape = small_graph(seed)
    rule = _random_rule(data_conditioned=data_conditioned)
    x = torch.randn(5, *shape, dtype=torch.float64) if data_conditioned else None
    graph.weight = graph.weight.clone().requires_grad_(True)
    dw, dh = rule(graph, x) if x is not None else rule(graph)
    rw, rh = reference_mlp_rule(rule, graph, x)
    torch.testing.assert_close(dw, rw, atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(dh, rh, atol=1e-10, rtol=1e-8)
    # gradients w.r.t. the rule's parameters and the graph's weights agree too
    loss = (dw.sin().sum() + dh.square().sum())
    ref_loss = (rw.sin().sum() + rh.square().sum())
    params = list(rule.parameters()) + [graph.weight]
    got = torch.autograd.grad(loss, params)
    want = torch.autograd.grad(ref_loss, params)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-7)


def test_batched_equals_unbatched() -> None:
    batch = small_batch()
    rule = _random_rule()
    assert_batched_equals_unbatched(rule, batch)


@pytest.mark.parametrize("workers", [None, 1, 2, 3])
def test_no_grad_path_equals_grad_path(workers: int | None) -> None:
    """The inference path (chunks written in place, spread over ``workers`` threads) gives
    exactly the autograd path's numbers, and the reference's."""
    graph, _ = small_graph(4)
    rule = _random_rule(workers=workers)
    rule.chunk_size = 11
    assert graph.num_edges >= 2 * 3 * rule.chunk_size  # enough chunks for 3 threads
    dw, dh = rule(graph)
    with torch.no_grad():
        dw2, dh2 = rule(graph)
    assert torch.equal(dw, dw2) and torch.equal(dh, dh2)
    rw, rh = reference_mlp_rule(rule, graph, None)
    torch.testing.assert_close(dw2, rw, atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(dh2, rh, atol=1e-10, rtol=1e-8)


def test_errors() -> None:
    graph, shape = small_graph(1, hidden_dim=3)
    with pytest.raises(ValueError, match=r"hidden states \[\d+, 4\]"):
        MLPRule(4)(graph)
    with pytest.raises(ValueError, match="needs a data batch"):
        MLPRule(3, data_conditioned=True).double()(graph)
    with pytest.raises(ValueError, match="data_conditioned=False"):
        MLPRule(3).double()(graph, torch.randn(2, *shape, dtype=torch.float64))


def test_edge_order_invariance() -> None:
    graph, _ = small_graph(3)
    rule = _random_rule()
    dw, dh = rule(graph)
    perm = torch.randperm(graph.num_edges, generator=torch.Generator().manual_seed(0))
    shuffled = ng.NeuralGraph(edge_index=graph.edge_index[:, perm], weight=graph.weight[perm],
                              hidden=graph.hidden[perm], edge_pos=graph.edge_pos[perm],
                              num_nodes=graph.num_nodes)
    sw, sh = rule(shuffled)
    torch.testing.assert_close(sw, dw[perm])
    torch.testing.assert_close(sh, dh[perm])


@pytest.mark.parametrize("seed", range(4))
def test_node_means_equal_propagate(seed: int) -> None:
    """Block-sum node means (dense and scatter blocks) equal PyG's mean scatter over the edges
    entering / leaving each node."""
    from torch_geometric.utils import scatter

    from neuralgraph.rules.base import edge_state
    from neuralgraph.rules.layout import DenseBlock, block_layout
    from neuralgraph.rules.mlp_rule import _node_means

    graph, _ = small_graph(seed)
    n = graph.num_nodes
    state = edge_state(graph)
    want_in = scatter(state, graph.edge_index[1], 0, dim_size=n, reduce="mean")
    want_out = scatter(state, graph.edge_index[0], 0, dim_size=n, reduce="mean")
    for min_dense in (0, 10 ** 9):
        blocks = block_layout(graph, min_dense)
        assert any(isinstance(b, DenseBlock) for b in blocks) == (min_dense == 0)
        got_in, got_out = _node_means(graph, blocks)
        torch.testing.assert_close(got_in, want_in, atol=1e-12, rtol=1e-10)
        torch.testing.assert_close(got_out, want_out, atol=1e-12, rtol=1e-10)
