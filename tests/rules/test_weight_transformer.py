"""WeightTransformer against its per-edge reference; RoPE; equivariance; autograd."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import neuralgraph as ng
from neuralgraph.reference import reference_weight_transformer, rotate_loop
from neuralgraph.rules import WeightTransformer
from neuralgraph.rules.layout import DenseBlock, ScatterBlock, block_layout
from neuralgraph.rules.linear_attention import (
    LOG2E,
    chunks,
    head_dot,
    neighbourhood_attention,
    phi,
    phi_log2,
    rope_angles,
    rope_block_tables,
    rope_factors,
    rope_rotate,
    scatter_attention,
)
from neuralgraph.testing import node_permutation, permute_hidden, random_cnn, random_mlp
from tests.rules.helpers import assert_batched_equals_unbatched, small_batch, small_graph
from tests.rules.smoke import smoketest_rule


def _random_rule(**kw: object) -> WeightTransformer:
    kw.setdefault("chunk_size", 29)
    kw.setdefault("min_dense", 0)  # exercise the dense block path on small graphs
    rule = WeightTransformer(4, ff_dim=8, head_width=8, **kw).double()
    torch.manual_seed(0)
    for p in rule.parameters():
        nn.init.normal_(p, std=0.3)
    return rule


def test_smoke_and_repr() -> None:
    graph, _ = small_graph(2)
    smoketest_rule(WeightTransformer(4, ff_dim=8, head_width=8).double(), graph,
                   "WeightTransformer(4, heads=5, head_dim=4, rope=True)")
    rule = WeightTransformer(4, rope=(True, False, False, True, True))
    assert str(rule) == ("WeightTransformer(4, heads=5, head_dim=4, "
                         "rope=(True, False, False, True, True))")


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("normalize, min_dense", [(True, 0), (False, 0), (True, 10 ** 9)])
def test_matches_reference(seed: int, normalize: bool, min_dense: int) -> None:
    graph, _ = small_graph(seed, limit=250)
    rule = _random_rule(normalize=normalize, min_dense=min_dense)
    graph.hidden = graph.hidden.clone().requires_grad_(True)
    dw, dh = rule(graph)
    rw, rh = reference_weight_transformer(rule, graph)
    torch.testing.assert_close(dw, rw, atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(dh, rh, atol=1e-10, rtol=1e-8)
    params = list(rule.parameters()) + [graph.hidden]
    got = torch.autograd.grad(dw.sin().sum() + dh.square().sum(), params, allow_unused=True,
                              materialize_grads=True)
    want = torch.autograd.grad(rw.sin().sum() + rh.square().sum(), params, allow_unused=True,
                               materialize_grads=True)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-7)
    with torch.no_grad():
        nw, nh = rule(graph)
    torch.testing.assert_close(nw, rw, atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(nh, rh, atol=1e-10, rtol=1e-8)


def test_layout_is_dense_for_linear_and_conv() -> None:
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(3 * 4, 5))
    graph = ng.to_neural_graph(model.eval(), input_shape=(2, 4, 4))
    blocks = block_layout(graph, min_dense=0)
    kinds = [type(b).__name__ for b in blocks]
    # conv W, conv b, BN gamma (diagonal: scatter), BN beta, linear W (after flatten), linear b
    assert kinds == ["DenseBlock", "DenseBlock", "ScatterBlock", "DenseBlock", "DenseBlock", "DenseBlock"]
    conv, lin = blocks[0], blocks[4]
    assert isinstance(conv, DenseBlock) and (conv.O, conv.C, conv.R) == (3, 2, 9)
    assert isinstance(lin, DenseBlock) and (lin.O, lin.C, lin.R) == (5, 3, 4)
    assert isinstance(blocks[2], ScatterBlock)
    # small blocks are merged into one scatter block covering every edge
    merged = block_layout(graph, min_dense=100)
    assert [type(b).__name__ for b in merged] == ["ScatterBlock"]
    assert merged[0].numel == graph.num_edges


def test_batched_equals_unbatched() -> None:
    batch = small_batch((1, 2, 4))
    rule = _random_rule()
    assert_batched_equals_unbatched(rule, batch)


def test_rope_matches_loop() -> None:
    torch.manual_seed(0)
    x = torch.randn(7, 3, 6, dtype=torch.float64)
    pos = torch.randint(0, 50, (7, 5))
    axes = (0, 2, -1)
    ang = rope_angles(pos, axes, 6, 100.0, torch.float64)
    got = rope_rotate(x, ang)
    for e in range(7):
        for h, a in enumerate(axes):
            want = x[e, h] if a < 0 else rotate_loop(x[e, h], float(pos[e, a]), 6, 100.0)
            torch.testing.assert_close(got[e, h], want)
    # rotations preserve norms and relative positions: <R(p)q, R(p')k> depends on p - p' only
    q, k = torch.randn(1, 1, 6, dtype=torch.float64), torch.randn(1, 1, 6, dtype=torch.float64)
    def score(p: int, p2: int) -> torch.Tensor:
        a = rope_angles(torch.tensor([[p] * 5]), (0,), 6, 100.0, torch.float64)
        b = rope_angles(torch.tensor([[p2] * 5]), (0,), 6, 100.0, torch.float64)
        return (rope_rotate(q, a) * rope_rotate(k, b)).sum()
    torch.testing.assert_close(score(3, 1), score(10, 8))


def test_block_attention_matches_scatter_reference() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 9, 6), nn.Tanh(),
                          nn.Linear(6, 4))
    graph = ng.to_neural_graph(model.double(), input_shape=(2, 5, 5))
    e, heads, d = graph.num_edges, 3, 4
    q, k, v = (phi(torch.randn(e, heads * d, dtype=torch.float64)) for _ in range(3))
    ang = rope_angles(graph.edge_pos, (0, 1, 2), d, 100.0, torch.float64)
    qr, kr = (rope_rotate(t.view(e, heads, d), ang).view(e, -1) for t in (q, k))
    blocks = block_layout(graph, min_dense=0)
    assert any(isinstance(b, DenseBlock) for b in blocks)
    ref_f = scatter_attention(graph.edge_index, graph.num_nodes, heads, qr, q, kr, k, v, forward=True)
    ref_b = scatter_attention(graph.edge_index, graph.num_nodes, heads, qr, q, kr, k, v, forward=False)
    for grad in (True, False):  # no grad: chunks spread over threads, outputs written in place
        with torch.set_grad_enabled(grad):
            a_f, a_b = neighbourhood_attention(blocks, graph.num_nodes, heads, (qr, qr), (q, q),
                                               (kr, kr), (k, k), (v, v), chunk_size=50)
        torch.testing.assert_close(a_f, ref_f)
        torch.testing.assert_close(a_b, ref_b)


def _edge_map(g0: ng.NeuralGraph, g1: ng.NeuralGraph, mapping: torch.Tensor) -> torch.Tensor:
    """For each edge of g1 (permuted model), the matching edge id of g0."""
    def keys(g: ng.NeuralGraph, m: torch.Tensor) -> list:
        s, t = m[g.edge_index[0]].tolist(), m[g.edge_index[1]].tolist()
        p = g.edge_pos.tolist()
        return [(a, b, r[0], r[3], r[4]) for a, b, r in zip(s, t, p)]
    index = {k: i for i, k in enumerate(keys(g0, torch.arange(g0.num_nodes)))}
    return torch.tensor([index[k] for k in keys(g1, mapping)])


@pytest.mark.parametrize("seed", range(4))
def test_permutation_equivariance(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    model, shape = random_mlp(g) if seed % 2 else random_cnn(g, max_channels=3)
    model = model.double()
    permuted, perms = permute_hidden(model, g)
    g0 = ng.to_neural_graph(model, hidden_dim=4, input_shape=shape)
    g1 = ng.to_neural_graph(permuted, hidden_dim=4, input_shape=shape)
    g0.hidden = torch.randn(g0.hidden.shape, generator=g, dtype=torch.float64)
    idx = _edge_map(g0, g1, node_permutation(g0, perms))
    assert torch.equal(g1.weight, g0.weight[idx])
    g1.hidden = g0.hidden[idx]
    rule = _random_rule(rope=(True, False, False, True, True))
    dw0, dh0 = rule(g0)
    dw1, dh1 = rule(g1)
    torch.testing.assert_close(dw1, dw0[idx])
    torch.testing.assert_close(dh1, dh0[idx])
    moved = [p for p in perms if p is not None and not torch.equal(p, torch.arange(p.numel()))]
    if moved:  # with the neuron axes on, equivariance is (deliberately) broken
        rule_on = _random_rule()
        assert not torch.allclose(rule_on(g1)[0], rule_on(g0)[0][idx])


def test_edge_order_invariance() -> None:
    graph, _ = small_graph(2, limit=300)
    rule = _random_rule()
    dw, dh = rule(graph)
    perm = torch.randperm(graph.num_edges, generator=torch.Generator().manual_seed(1))
    shuffled = ng.NeuralGraph(edge_index=graph.edge_index[:, perm], weight=graph.weight[perm],
                              hidden=graph.hidden[perm], edge_pos=graph.edge_pos[perm],
                              num_nodes=graph.num_nodes)
    sw, sh = rule(shuffled)
    torch.testing.assert_close(sw, dw[perm])
    torch.testing.assert_close(sh, dh[perm])


def test_checkpointing_gives_same_gradients() -> None:
    graph, _ = small_graph(5, limit=300)
    grads = []
    for ckpt in (False, True):
        rule = _random_rule(checkpointing=ckpt)
        g = graph
        for _ in range(3):  # backprop through several rule steps
            g = ng.step(g, rule, fire_rate=1.0)
        loss = g.weight.square().sum() + g.hidden.sin().sum()
        grads.append(torch.autograd.grad(loss, list(rule.parameters())))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_errors() -> None:
    graph, _ = small_graph(1)
    with pytest.raises(ValueError, match="head_dim must be even"):
        WeightTransformer(4, head_dim=3)
    with pytest.raises(ValueError, match="one flag per axis"):
        WeightTransformer(4, rope=(True, False))
    with pytest.raises(ValueError, match="not data-conditioned"):
        WeightTransformer(4).double()(graph, torch.zeros(1))


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_no_grad_fast_path_matches_reference(seed: int, workers: int) -> None:
    """The inference path (folded LayerNorms and biases, cached RoPE tables, chunks spread over
    threads) equals the per-edge reference and the autograd path."""
    graph, _ = small_graph(seed, limit=400)
    rule = _random_rule(workers=workers, chunk_size=17)
    assert len(list(chunks(block_layout(graph, 0), 17))) >= 2 * workers  # threads really used
    rw, rh = reference_weight_transformer(rule, graph)
    with torch.no_grad():
        nw, nh = rule(graph)
    gw, gh = rule(graph)  # autograd path (module layers, no folding)
    for a, b in ((nw, rw), (nh, rh), (gw.detach(), rw), (gh.detach(), rh)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)


def test_no_grad_float32_close_to_float64() -> None:
    graph, _ = small_graph(3, limit=400)
    rule = _random_rule(chunk_size=17)
    with torch.no_grad():
        w64, h64 = rule(graph)
        g32 = graph.clone()
        g32.weight, g32.hidden = graph.weight.float(), graph.hidden.float()
        w32, h32 = rule.float()(g32)
    torch.testing.assert_close(w32.double(), w64, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(h32.double(), h64, atol=1e-5, rtol=1e-4)


def test_rope_block_tables_match_angles_and_fall_back() -> None:
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    graph = ng.to_neural_graph(model, hidden_dim=4, input_shape=(2, 6, 6))
    axes, d = (0, 1, 2, 3, 4, -1), 4
    dense = [b for b in block_layout(graph, 0) if isinstance(b, DenseBlock)]
    assert any(b.R > 1 for b in dense)
    for b in dense:
        rows, cols = rope_block_tables(graph.edge_pos, b, axes, d, 100.0)
        got = (rows.unsqueeze(1) * cols.unsqueeze(0)).reshape(-1, len(axes), d // 2)
        sl = slice(b.offset, b.offset + b.numel)
        want = rope_factors(rope_angles(graph.edge_pos[sl], axes, d, 100.0))
        torch.testing.assert_close(got, want, atol=0, rtol=0)
    # a position that depends on both row and column is not separable
    b = max(dense, key=lambda b: b.numel)
    pos = graph.edge_pos.clone()
    pos[b.offset, 0] += 1
    assert rope_block_tables(pos, b, axes, d, 100.0) is None
    # ... and the rule then computes the factors from edge_pos, still matching the reference
    g2 = graph.clone()
    g2.edge_pos = pos
    g2.weight, g2.hidden = g2.weight.double(), torch.randn(g2.hidden.shape, dtype=torch.float64)
    rule = _random_rule(chunk_size=40)
    rw, rh = reference_weight_transformer(rule, g2)
    with torch.no_grad():
        nw, nh = rule(g2)
    torch.testing.assert_close(nw, rw, atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(nh, rh, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_phi_fast_form_and_head_dot(dtype: torch.dtype) -> None:
    x = torch.cat([torch.linspace(-30, 30, 1001, dtype=dtype), torch.zeros(3, dtype=dtype)])
    with torch.no_grad():
        fast = phi(x)
    want = torch.nn.functional.elu(x) + 1
    tol = 1e-6 if dtype == torch.float32 else 1e-13
    torch.testing.assert_close(fast, want, atol=tol, rtol=tol)
    torch.testing.assert_close(phi_log2(x * LOG2E), want, atol=tol, rtol=tol)
    a, b = torch.randn(7, 3, 4, dtype=dtype), torch.randn(7, 1, 4, dtype=dtype)
    torch.testing.assert_close(head_dot(a, b), (a * b).sum(-1))


def test_threaded_inference_mode() -> None:
    """Worker threads inherit inference mode (its tensors may only be updated in place inside it)."""
    from neuralgraph.rules import MLPRule

    model = nn.Sequential(nn.Linear(30, 40), nn.ReLU(), nn.Linear(40, 10))
    graph = ng.to_neural_graph(model, hidden_dim=4)
    for rule in (WeightTransformer(4, chunk_size=200, min_dense=0, workers=2),
                 MLPRule(4, chunk_size=200, workers=2)):
        nn.init.normal_(rule.out.weight, std=0.1)
        with torch.no_grad():
            want = rule(graph)
        with torch.inference_mode():
            got = rule(graph)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_tall_linear_matches_linear_values_and_gradients():
    from neuralgraph.rules.base import _TallLinear, tall_linear

    torch.manual_seed(0)
    for k, o in ((11, 80), (40, 20)):  # both orientations of the weight-gradient product
        lin = torch.nn.Linear(k, o).double()
        x = torch.randn(50, k, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(_TallLinear.apply, (x, lin.weight, lin.bias))
        assert torch.equal(tall_linear(x, lin), lin(x))
    with torch.no_grad():
        assert torch.equal(tall_linear(x, lin), lin(x))
