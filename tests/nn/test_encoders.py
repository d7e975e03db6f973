"""NG-GNN and NG-T: invariance to hidden-neuron permutations, batching, smoke checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch

from neuralgraph.errors import NeuralGraphError
from neuralgraph.nn import NGGNN, NGTransformer
from tests.nn.helpers import graph_pair

ENCODERS = {
    "gnn": lambda shape: NGGNN(8, num_layers=2),
    "t_linear": lambda shape: NGTransformer(8, num_layers=2, heads=2),
    "t_softmax": lambda shape: NGTransformer(8, num_layers=2, heads=2, attention="softmax"),
    "gnn_probes": lambda shape: NGGNN(8, num_layers=1, num_probes=2, input_shape=shape),
    "t_probes": lambda shape: NGTransformer(8, num_layers=1, heads=2, num_probes=2, input_shape=shape),
}


def _make(name: str, shape: tuple, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return ENCODERS[name](shape).double()


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("name", list(ENCODERS))
def test_invariant_to_hidden_permutation(name: str, kind: str) -> None:
    graph, pgraph, shape = graph_pair(kind, seed=1)
    enc = _make(name, shape)
    with torch.no_grad():
        out, pout = enc(graph), enc(pgraph)
        # node-level features are equivariant, not invariant: hidden embeddings differ in order
        assert out.shape == (1, 1)
        assert torch.allclose(out, pout, atol=1e-5, rtol=0), (out, pout)
        # ... while the output does depend on the weights: shuffling them changes it
        shuffled = graph.clone()
        shuffled.weight = graph.weight[torch.randperm(graph.num_edges, generator=torch.Generator().manual_seed(0))]
        assert (enc(shuffled) - out).abs().max() > 1e-6


@pytest.mark.parametrize("name", ["gnn", "t_linear", "t_softmax"])
def test_not_invariant_to_input_permutation(name: str) -> None:
    """Input/output neurons carry positional embeddings: permuting output rows is visible."""
    graph, _, shape = graph_pair("mlp", seed=2)
    enc = _make(name, shape)
    moved = graph.clone()
    out_ids = (graph.node_role == 2).nonzero().view(-1)
    assert out_ids.numel() > 1
    perm = out_ids[torch.roll(torch.arange(out_ids.numel()), 1)]
    mapping = torch.arange(graph.num_nodes)
    mapping[out_ids] = perm
    moved.edge_index = mapping[graph.edge_index]  # rewire edges to other output neurons
    with torch.no_grad():
        assert (enc(moved) - enc(graph)).abs().max() > 1e-6


@pytest.mark.parametrize("name", list(ENCODERS))
def test_batched_equals_unbatched(name: str) -> None:
    g1, _, shape = graph_pair("cnn", seed=1)
    g2, _, _ = graph_pair("cnn", seed=3)
    if g2.arch.input_shape != shape:
        g2, _, _ = graph_pair("cnn", seed=1)
    enc = _make(name, shape)
    with torch.no_grad():
        both = enc(Batch.from_data_list([g1, g2]))
        assert both.shape == (2, 1)
        assert torch.allclose(both[0], enc(g1)[0], atol=1e-10)
        assert torch.allclose(both[1], enc(g2)[0], atol=1e-10)


@pytest.mark.parametrize("name", list(ENCODERS))
def test_smoke_backward_reset(name: str) -> None:
    graph, _, shape = graph_pair("mlp", seed=0)
    enc = _make(name, shape)
    out = enc(graph)
    assert out.dtype == torch.float64 and torch.isfinite(out).all()
    out.sum().backward()
    grads = [p.grad for p in enc.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    before = [p.detach().clone() for p in enc.parameters()]
    enc.reset_parameters()
    after = list(enc.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after))


def test_repr() -> None:
    assert str(NGGNN(32)) == "NGGNN(32, num_layers=3, out_channels=1, num_probes=0)"
    assert str(NGTransformer(32, heads=4)) == (
        "NGTransformer(32, num_layers=3, heads=4, attention='linear', num_probes=0)")
    enc = NGTransformer(16, 1, heads=2, attention="softmax")
    assert str(enc.layers[0].attn) == "RelationalAttention(16, heads=2, attention='softmax')"
    assert str(NGGNN(8, 1).layers[0].fwd) == (
        "PNAEdgeConv(8, aggregators=['mean', 'max', 'min', 'std'], "
        "scalers=['identity', 'amplification', 'attenuation'])")


def test_errors() -> None:
    with pytest.raises(ValueError, match="multiple of heads"):
        NGTransformer(10, heads=4)
    with pytest.raises(ValueError, match="attention must be one of"):
        NGTransformer(8, heads=2, attention="dense")
    with pytest.raises(ValueError, match="unknown aggregators"):
        NGGNN(8, aggregators=("median",))
    with pytest.raises(ValueError, match="needs input_shape"):
        NGGNN(8, num_probes=2)
    graph, _, _ = graph_pair("mlp", seed=0)
    enc = NGGNN(8, 1, max_layers=1).double()
    with pytest.raises(NeuralGraphError, match="layer index .* out of range"):
        enc(graph)
