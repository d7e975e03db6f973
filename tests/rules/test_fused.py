"""The Weight Transformer's fused C kernel against the PyTorch path and the per-edge reference."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch

import neuralgraph as ng
from neuralgraph import native
from neuralgraph.reference import reference_mlp_rule, reference_weight_transformer
from neuralgraph.rules import MLPRule, WeightTransformer, fused
from neuralgraph.rules.linear_attention import phi, rope_angles, rope_rotate, scatter_attention
from neuralgraph.testing import random_cnn, random_mlp

pytestmark = pytest.mark.skipif(not fused.available(), reason=f"fused kernel unavailable: {native.status()}")


def _rule(hidden: int = 16, seed: int = 0, cls: type = WeightTransformer, **kw: object) -> torch.nn.Module:
    torch.manual_seed(seed)
    rule = cls(hidden, **kw)
    for p in rule.parameters():  # non-trivial everything: LayerNorm gains, zero-init head, biases
        nn.init.normal_(p, std=0.3)
    return rule


def _graph(seed: int, hidden: int = 16, cnn: bool = False, small: bool = False) -> ng.NeuralGraph:
    """A random MLP or CNN graph (``small``: at most a few hundred edges, for the slow reference)."""
    g = torch.Generator().manual_seed(seed)
    model, shape = (random_cnn(g, max_conv=2, max_channels=2 if small else 4, max_dense=2) if cnn
                    else random_mlp(g, max_width=10 if small else 40))
    graph = ng.to_neural_graph(model, hidden_dim=hidden, input_shape=shape)
    graph.hidden = torch.randn(graph.hidden.shape, generator=g)
    graph.weight = torch.randn(graph.weight.shape, generator=g)
    return graph


def _torch_path(rule: torch.nn.Module, graph: object) -> tuple:
    """The rule's no-grad PyTorch path (``native=False``), whatever its setting was."""
    native_flag, rule.native = rule.native, False
    try:
        with torch.no_grad():
            return rule(graph)
    finally:
        rule.native = native_flag


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def _assert_kernel_matches_torch(rule: WeightTransformer, graph: object, workers: int) -> None:
    with torch.no_grad():
        fw, fh = fused.wt_forward(rule, graph, workers=workers)
    tw, th = _torch_path(rule, graph)
    _close(fw, tw)
    _close(fh, th)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("cnn", [False, True])
def test_fused_matches_torch_and_reference(seed: int, cnn: bool) -> None:
    graph = _graph(seed, cnn=cnn, small=True)
    assert 16 < graph.num_edges < 2500, graph.num_edges  # several tiles, a ragged last one
    rule = _rule(seed=seed)
    with torch.no_grad():
        assert fused.can_run(rule, graph) is None
        fw, fh = fused.wt_forward(rule, graph, workers=1)
        aw, ah = rule(graph)  # the module's own no-grad forward takes the fused path too
    tw, th = _torch_path(rule, graph)
    _close(fw, tw)
    _close(fh, th)
    assert torch.equal(aw, fw) and torch.equal(ah, fh)
    rw, rh = reference_weight_transformer(rule.double(), _as_double(graph))
    _close(fw.double(), rw)
    _close(fh.double(), rh)


def _as_double(graph: ng.NeuralGraph) -> ng.NeuralGraph:
    g = graph.clone()
    g.weight, g.hidden = graph.weight.double(), graph.hidden.double()
    return g


@pytest.mark.parametrize("kw", [
    dict(hidden=5, heads=3, head_dim=6, ff_dim=24, head_width=40),
    dict(hidden=16, rope=(True, False, True, False, True), normalize=False),
    dict(hidden=16, rope=False, heads=2, head_dim=2),
    dict(hidden=3, heads=7, head_dim=4, head_axes=(4, 3, 2, 1, 0, -1, 2)),
])
def test_fused_other_configs(kw: dict) -> None:
    hidden = kw.pop("hidden")
    graph = _graph(7, hidden=hidden, cnn=True)
    _assert_kernel_matches_torch(_rule(hidden, **kw), graph, workers=1)


def test_fused_threads_ranges_and_batches() -> None:
    """Several threads, ranges not multiples of the tile, a Batch of MLPs and CNNs: the result is
    the same function (summation order only), and the batch equals its graphs one by one."""
    graphs = [_graph(s, cnn=s % 2 == 0) for s in range(6)]
    batch = Batch.from_data_list(graphs)
    rule = _rule()
    with torch.no_grad():
        one = fused.wt_forward(rule, batch, workers=1)
        many = fused.wt_forward(rule, batch, workers=3, range_size=37)
    tw, th = _torch_path(rule, batch)
    for a, b in ((one[0], tw), (one[1], th), (many[0], tw), (many[1], th)):
        _close(a, b)
    offset = 0
    for g in graphs:
        with torch.no_grad():
            gw, gh = fused.wt_forward(rule, g, workers=1)
        n = g.num_edges
        _close(one[0][offset:offset + n], gw)
        _close(one[1][offset:offset + n], gh)
        offset += n


def test_fused_large_dense_graph_uses_slot_caches() -> None:
    """A graph big enough for several threads and for the tile caches to evict (more distinct
    tiles of source nodes than slots): equals the PyTorch path."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(700, 64), nn.ReLU(), nn.Linear(64, 9000), nn.ReLU(), nn.Linear(9000, 3))
    graph = ng.to_neural_graph(model, hidden_dim=4)
    graph.hidden = torch.randn(graph.hidden.shape)
    _assert_kernel_matches_torch(_rule(4, head_width=8, ff_dim=8), graph, workers=2)


def test_fused_edge_order_invariance() -> None:
    graph = _graph(3, cnn=True)
    rule = _rule()
    perm = torch.randperm(graph.num_edges, generator=torch.Generator().manual_seed(1))
    shuffled = graph.clone()
    for key in ("weight", "hidden", "edge_pos"):
        setattr(shuffled, key, getattr(graph, key)[perm])
    shuffled.edge_index = graph.edge_index[:, perm]
    with torch.no_grad():
        w0, h0 = fused.wt_forward(rule, graph, workers=1)
        w1, h1 = fused.wt_forward(rule, shuffled, workers=2, range_size=50)
    _close(w1, w0[perm])
    _close(h1, h0[perm])


def test_fused_attention_matches_scatter_reference() -> None:
    graph = _graph(5, cnn=True)
    e, heads, d = graph.num_edges, 5, 4
    dim = heads * d
    gen = torch.Generator().manual_seed(0)
    q, k, v = (phi(torch.randn(e, 2 * dim, generator=gen)) for _ in range(3))
    ang = rope_angles(graph.edge_pos, tuple(range(heads)), d, 100.0)
    qr = rope_rotate(q.view(e, 2, heads, d), ang).view(e, 2 * dim)
    kr = rope_rotate(k.view(e, 2, heads, d), ang).view(e, 2 * dim)
    f, b = slice(0, dim), slice(dim, 2 * dim)
    for normalize in (True, False):
        with torch.no_grad():
            a_f, a_b = fused.fused_attention(graph.edge_index, graph.num_nodes, heads, (qr[:, f], qr[:, b]),
                                             (q[:, f], q[:, b]), (kr[:, f], kr[:, b]), (k[:, f], k[:, b]),
                                             (v[:, f], v[:, b]), normalize=normalize, workers=2,
                                             range_size=40)
        for out, sl, fwd in ((a_f, f, True), (a_b, b, False)):
            ref = scatter_attention(graph.edge_index, graph.num_nodes, heads, qr[:, sl].contiguous(),
                                    q[:, sl].contiguous(), kr[:, sl].contiguous(), k[:, sl].contiguous(),
                                    v[:, sl].contiguous(), forward=fwd, normalize=normalize)
            _close(out, ref)


def test_can_run_reasons_and_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    graph = _graph(1)
    rule = _rule()
    assert "autograd" in fused.can_run(rule, graph)  # grad mode on here
    with torch.no_grad():
        assert "dtype" in fused.can_run(rule, _as_double(graph))
        assert fused.can_run(rule, graph) is None
        # native=False takes the PyTorch path; both agree
        rule.native = False
        tw, _ = rule(graph)
        rule.native = True
        nw, _ = rule(graph)
        _close(nw, tw)
        # float64 graphs cannot use the kernel: native=True says so, native=None falls back
        with pytest.raises(native.NativeUnavailable, match="float32"):
            rule.double()(_as_double(graph))
        rule.native = None
        rule(_as_double(graph))
    # switched off by the environment: load() gives None, the rule falls back
    monkeypatch.setenv("NEURALGRAPH_NATIVE", "0")
    assert native.load() is None and "NEURALGRAPH_NATIVE" in native.status()
    rule = _rule()
    with torch.no_grad():
        assert "NEURALGRAPH_NATIVE" in fused.can_run(rule, graph)
        rule(graph)
        rule.native = True
        with pytest.raises(native.NativeUnavailable, match="NEURALGRAPH_NATIVE"):
            rule(graph)


def test_negative_positions_are_an_error() -> None:
    graph = _graph(2)
    graph.edge_pos = graph.edge_pos.clone()
    graph.edge_pos[0, 1] = -3
    with torch.no_grad(), pytest.raises(ValueError, match="negative positions"):
        fused.wt_forward(_rule(), graph, workers=1)


def test_build_cache_is_reused(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A build lands in $NEURALGRAPH_CACHE under a key of source, flags, compiler and CPU; a
    second build finds it instead of compiling again."""
    monkeypatch.setenv("NEURALGRAPH_CACHE", str(tmp_path))
    lib = native._build("wt_fused")
    built = sorted(tmp_path.glob("wt_fused-*.so"))
    assert len(built) == 1 and lib.ng_wt_tile() > 0
    mtime = built[0].stat().st_mtime_ns
    native._build("wt_fused")
    assert sorted(tmp_path.glob("wt_fused-*.so")) == built and built[0].stat().st_mtime_ns == mtime
    assert not list(tmp_path.glob("*.so.tmp*")) and len(list(tmp_path.iterdir())) == 1


# ---------------------------------------------------------------------------------------- MLPRule
def _mlp_rule(hidden: int = 16, seed: int = 0, **kw: object) -> MLPRule:
    return _rule(hidden, seed, MLPRule, **kw)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("cnn", [False, True])
def test_fused_mlp_rule_matches_torch_and_reference(seed: int, cnn: bool) -> None:
    graph = _graph(seed, cnn=cnn, small=True)
    rule = _mlp_rule(seed=seed, update_scale=0.5)
    with torch.no_grad():
        assert fused.mlp_can_run(rule, graph) is None
        fw, fh = rule(graph)
    tw, th = _torch_path(rule, graph)
    _close(fw, tw)
    _close(fh, th)
    rw, rh = reference_mlp_rule(rule.double(), _as_double(graph))
    _close(fw.double(), rw)
    _close(fh.double(), rh)


@pytest.mark.parametrize("kw", [dict(depth=0), dict(depth=1, width=7), dict(depth=3, width=40)])
def test_fused_mlp_rule_depths_batches_threads(kw: dict) -> None:
    graphs = [_graph(s, hidden=5, cnn=s % 2 == 0) for s in range(5)]
    batch = Batch.from_data_list(graphs)
    rule = _mlp_rule(5, **kw)
    with torch.no_grad():
        node_in, node_out = rule._node_signals(batch, None)[:2]
        many = fused.mlp_forward(rule, batch, node_in, node_out, workers=3, range_size=33)
    tw, th = _torch_path(rule, batch)
    _close(many[0], tw)
    _close(many[1], th)


def test_fused_mlp_rule_fallbacks() -> None:
    """The data-conditioned rule keeps the PyTorch path (native=None) or says why (native=True)."""
    graph = ng.to_neural_graph(nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)), hidden_dim=16)
    x = torch.randn(5, 4)
    rule = _mlp_rule(data_conditioned=True)
    with torch.no_grad():
        assert "data-conditioned" in fused.mlp_can_run(rule, graph)
        dw, _ = rule(graph, x)
        assert dw.shape == (graph.num_edges,)
        rule.native = True
        with pytest.raises(native.NativeUnavailable, match="data-conditioned"):
            rule(graph, x)


def test_unwritable_cache_falls_back_to_temp_dir(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("NEURALGRAPH_CACHE", str(blocker / "cache"))
    monkeypatch.setattr(native.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    lib = native._build("wt_fused")
    assert lib.ng_wt_tile() > 0 and list((tmp_path / "tmp").glob("neuralgraph-*/wt_fused-*.so"))


def test_in_place_edge_pos_edit_is_seen() -> None:
    """The RoPE tables are cached per graph; editing edge_pos in place (new, larger positions)
    must not reuse the kernel's stale tables (checked against the PyTorch path)."""
    graph = _graph(4)
    rule = _rule(min_dense=0)
    with torch.no_grad():
        fused.wt_forward(rule, graph, workers=1)
        _torch_path(rule, graph)
        graph.edge_pos[:, 1] += 7
        fw, fh = fused.wt_forward(rule, graph, workers=1)
    tw, th = _torch_path(rule, graph)  # (its own cached tables must be rebuilt too)
    _close(fw, tw)
    _close(fh, th)


def test_no_compiler_leaves_the_pytorch_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a C compiler the kernel is unavailable, status says why, and both rules still run
    (PyTorch path) with the same results."""
    graph = _graph(6)
    wt, mlp = _rule(), _mlp_rule()
    with torch.no_grad():
        want = (wt(graph), mlp(graph))  # kernel
    monkeypatch.setattr(native, "_libs", {})
    monkeypatch.setattr(native, "_status", {})
    monkeypatch.setattr(native, "_compiler", lambda: None)
    assert not fused.available() and "no C compiler" in native.status()
    with torch.no_grad():
        assert "no C compiler" in fused.can_run(wt, graph)
        got = (wt(graph), mlp(graph))
    for (a, b), (c, d) in zip(got, want):
        _close(a, c)
        _close(b, d)
