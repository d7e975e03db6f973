"""The data-conditioned WeightTransformer: per-edge reference, zero start, probe batch, warm start."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import neuralgraph as ng
from neuralgraph.meta import GraphFactory
from neuralgraph.meta.trainer import load_start_rule
from neuralgraph.reference import reference_weight_transformer
from neuralgraph.rules import WeightTransformer, fused
from tests.rules.helpers import small_graph


def _rule(data_conditioned: bool = True, **kw: object) -> WeightTransformer:
    kw.setdefault("chunk_size", 29)
    kw.setdefault("min_dense", 0)
    rule = WeightTransformer(4, ff_dim=8, head_width=8, data_conditioned=data_conditioned, **kw).double()
    torch.manual_seed(0)
    for p in rule.parameters():
        nn.init.normal_(p, std=0.3)
    return rule


def _batch(shape: tuple, seed: int) -> torch.Tensor:
    return torch.randn(5, *shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("seed", range(6))  # even seeds: CNNs (1-d and 2-d convs), odd: MLPs
def test_matches_reference_values_and_gradients(seed: int) -> None:
    graph, shape = small_graph(seed, limit=250)
    rule, x = _rule(), _batch(shape, seed)
    dw, dh = rule(graph, x)
    rw, rh = reference_weight_transformer(rule, graph, x)
    torch.testing.assert_close(dw, rw, atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(dh, rh, atol=1e-10, rtol=1e-8)
    params = list(rule.parameters())
    kw = dict(allow_unused=True, materialize_grads=True)  # tiny graphs leave a layer unused
    got = torch.autograd.grad(dw.sin().sum() + dh.square().sum(), params, **kw)
    want = torch.autograd.grad(rw.sin().sum() + rh.square().sum(), params, **kw)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-7)
    # the activations really enter: without the data projection the update differs
    plain = _rule(False)
    pw, _ = plain(graph)
    assert (pw - dw).abs().max() > 1e-3


@pytest.mark.parametrize("workers", [1, 2])
def test_no_grad_path_matches_autograd_path(workers: int) -> None:
    graph, shape = small_graph(2, limit=400)
    rule, x = _rule(workers=workers, chunk_size=17), _batch(shape, 2)
    gw, gh = rule(graph, x)
    with torch.no_grad():
        nw, nh = rule(graph, x)
    torch.testing.assert_close(nw, gw.detach(), atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(nh, gh.detach(), atol=1e-10, rtol=1e-8)


def test_starts_as_the_rule_without_data_and_learns_from_it() -> None:
    graph, shape = small_graph(4, limit=300)
    x = _batch(shape, 4)
    plain = _rule(False)
    dc = WeightTransformer(4, ff_dim=8, head_width=8, data_conditioned=True, chunk_size=29,
                           min_dense=0).double()
    assert not dc.data_proj.weight.any()  # zero-initialised by reset_parameters
    load_start_rule(dc, plain)
    for a, b in zip(plain(graph), dc(graph, x)):
        torch.testing.assert_close(a, b, atol=0.0, rtol=0.0)
    dw, dh = dc(graph, x)
    grad = torch.autograd.grad(dw.square().sum() + dh.square().sum(), dc.data_proj.weight)[0]
    assert grad.abs().max() > 0  # the zero projection still gets a gradient
    # a non-zero data projection is not overwritten silently
    with torch.no_grad():
        dc.data_proj.weight.fill_(0.5)
    with pytest.raises(RuntimeError, match="data_proj.weight .* is not zero"):
        load_start_rule(dc, plain)
    # and a mismatching rule still fails like load_state_dict
    with pytest.raises(RuntimeError):
        load_start_rule(WeightTransformer(6).double(), plain)


def test_probe_batch_from_factory_and_errors() -> None:
    factory = GraphFactory(hidden_dim=4, input_shape=(1, 28, 28), weight_init="normal", weight_std=0.3,
                           fan_in_scaling=True, weight_standardization=True)
    spec = "cnn:m=0.125,k=3,h=8"
    rule = WeightTransformer(4, ff_dim=8, head_width=8, data_conditioned=True)
    for p in rule.parameters():
        nn.init.normal_(p, std=0.3, generator=torch.Generator().manual_seed(1))
    graph = factory.graph(spec, factory.fresh(spec))
    with pytest.raises(ValueError, match="needs a data batch"):
        rule(graph)
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    factory.set_data(x)
    graph = factory.graph(spec, factory.fresh(spec))
    acts = rule.edge_activations(graph)
    # the probe's activations are those of the network as it computes (scaled, standardised weights)
    net = factory.network_weight(spec, graph.weight)
    torch.testing.assert_close(acts, _edge_acts(graph, x, net))
    assert not torch.equal(net, graph.weight)  # (so the check above can tell the two apart)
    with torch.no_grad():
        a = rule(graph)
        assert fused.can_run(rule, graph) == "the rule is data-conditioned (the kernel takes no activations)"
    assert all(torch.isfinite(t).all() for t in a)
    with pytest.raises(ValueError, match="not data-conditioned"):
        WeightTransformer(4)(graph, x)


def _edge_acts(graph: ng.NeuralGraph, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    from neuralgraph.functional import node_activations

    act = node_activations(graph, x, weight)
    src, dst = graph.edge_index
    return torch.stack([act[src], act[dst]], 1)


def test_repr() -> None:
    assert str(WeightTransformer(4, data_conditioned=True)) == (
        "WeightTransformer(4, heads=5, head_dim=4, rope=True, data_conditioned=True)")


def test_checkpointing_gives_the_same_gradients() -> None:
    graph, shape = small_graph(2, limit=300)
    x = _batch(shape, 3)
    grads = []
    for ckpt in (False, True):
        rule = _rule(checkpointing=ckpt)
        g = graph
        for _ in range(2):  # through two rule steps: the activations depend on the grown weights
            g = ng.step(g, rule, fire_rate=1.0, x=x)
        loss = g.weight.square().sum() + g.hidden.sin().sum()
        grads.append(torch.autograd.grad(loss, list(rule.parameters())))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)
    assert grads[0][-1].abs().max() > 0  # data_proj (registered last) is trained
