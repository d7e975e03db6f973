"""Round trips model -> graph -> model, and conversion errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import neuralgraph as ng
from neuralgraph.testing import random_cnn, random_mlp


def _roundtrip(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    model, shape = (random_mlp if seed % 2 else random_cnn)(g)
    graph = ng.to_neural_graph(model, hidden_dim=4, input_shape=shape)
    assert graph.num_edges == sum(p.numel() for p in model.parameters())
    assert torch.equal(graph.weight, torch.cat([p.detach().flatten() for p in model.parameters()]))
    graph.validate()
    x = torch.randn(3, *shape, generator=g)
    y = model(x)
    torch.testing.assert_close(graph.to_module()(x), y, atol=1e-6, rtol=0)
    torch.testing.assert_close(graph.forward(x), y, atol=1e-6, rtol=0)


@pytest.mark.parametrize("seed", range(110))
def test_roundtrip_fuzz(seed: int) -> None:
    _roundtrip(seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(110, 610))
def test_roundtrip_fuzz_slow(seed: int) -> None:
    _roundtrip(seed)


def test_issue_example_command() -> None:
    code = ("import torch, neuralgraph as ng; m=torch.nn.Sequential(torch.nn.Conv2d(1,4,3),torch.nn.ReLU(),"
            "torch.nn.Flatten(),torch.nn.Linear(4*26*26,10)); g=ng.to_neural_graph(m); "
            "x=torch.randn(2,1,28,28); assert torch.allclose(g.to_module()(x), m(x), atol=1e-6); "
            "print(g.num_edges)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(4 * 1 * 9 + 4 + 4 * 26 * 26 * 10 + 10)


def test_flatten_positions_cross_boundary() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 2 * 3, 4))
    graph = ng.to_neural_graph(model, input_shape=(1, 4, 5))
    lin = graph.edge_pos[:, 0] == 1
    w_edges = lin & (graph.edge_kind == 0)
    # Linear weight W[o, c*6 + y*3 + x] is the edge chan_c -> out_o at (y, x)
    pos = graph.edge_pos[w_edges]
    j = torch.arange(12).repeat(4)
    assert torch.equal(pos[:, 1], j // 6)
    assert torch.equal(pos[:, 3], (j % 6) // 3)
    assert torch.equal(pos[:, 4], j % 3)
    # sources of the dense layer are the conv's output channel nodes
    conv_out = graph.edge_index[1, graph.edge_pos[:, 0] == 0].unique()
    assert set(graph.edge_index[0, w_edges].tolist()) == set(conv_out.tolist())


def test_non_square_flatten_needs_input_shape() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 3 * 5, 3))
    with pytest.raises(ng.WeightShapeError, match="input_shape"):
        ng.to_neural_graph(model)
    graph = ng.to_neural_graph(model, input_shape=(1, 5, 7))
    x = torch.randn(2, 1, 5, 7)
    assert torch.equal(graph.to_module()(x), model(x))


class _TracedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 3, 3, padding=1)
        self.c2 = nn.Conv2d(3, 5, 3, stride=2)
        self.fc = nn.Linear(5 * 3 * 3, 7)
        self.out = nn.Linear(7, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = torch.tanh(self.c2(x))
        x = x.view(x.size(0), -1)
        return F.log_softmax(self.out(F.gelu(self.fc(x))), dim=1)


def test_fx_traced_module() -> None:
    model = _TracedNet().eval()
    graph = ng.to_neural_graph(model)
    x = torch.randn(4, 1, 16, 16)
    assert torch.equal(graph.to_module()(x), model(x))
    assert [op.kind for op in graph.arch.ops][:3] == ["Conv2d", "ReLU", "MaxPool2d"]


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.a(x)


class _OwnParam(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3))
        self.a = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) * self.scale


@pytest.mark.parametrize("model, match", [
    (nn.LSTM(3, 4), r"'<root>' \(LSTM\)"),
    (nn.MultiheadAttention(4, 2), "MultiheadAttention"),
    (nn.Sequential(nn.Linear(3, 3), nn.Sequential(nn.ReLU(), nn.LSTM(3, 4))), r"'1\.1' \(LSTM\)"),
    (_Residual(), "residual"),
    (_OwnParam(), "'scale'"),
    (nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)), "groups=2"),
])
def test_unsupported_modules(model: nn.Module, match: str) -> None:
    with pytest.raises(ng.UnsupportedModuleError, match=match):
        ng.to_neural_graph(model)


def test_tied_nan_and_shape_errors() -> None:
    lin = nn.Linear(3, 3)
    with pytest.raises(ng.NeuralGraphError, match="shared"):
        ng.to_neural_graph(nn.Sequential(lin, nn.ReLU(), lin))
    bad = nn.Sequential(nn.Linear(3, 3))
    with torch.no_grad():
        bad[0].weight[1, 2] = float("nan")
    with pytest.raises(ng.NeuralGraphError, match=r"'0\.weight' has 1 NaN"):
        ng.to_neural_graph(bad)
    with pytest.raises(ng.WeightShapeError, match="in_features=5"):
        ng.to_neural_graph(nn.Sequential(nn.Linear(3, 4), nn.Linear(5, 2)))
    graph = ng.to_neural_graph(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)))
    with pytest.raises(ng.WeightShapeError, match=r"shape \(26,\)"):
        ng.load_weight(graph.arch.build(), graph.arch, torch.zeros(25))
    with pytest.raises(ng.WeightShapeError, match=r"shape \(26,\)"):
        graph.forward(torch.randn(1, 3), weight=torch.zeros(27))
    graph.weight = graph.weight.clone()
    graph.weight[20] = float("inf")
    with pytest.raises(ng.NeuralGraphError, match="NaN/inf"):
        graph.to_module()


def test_functional_forward_is_differentiable_without_copies() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    graph = ng.to_neural_graph(model)
    w = graph.weight.clone().requires_grad_(True)
    x = torch.randn(5, 1, 6, 6)
    graph.forward(x, weight=w).square().sum().backward()
    model(x).square().sum().backward()
    expected = torch.cat([p.grad.flatten() for p in model.parameters()])
    torch.testing.assert_close(w.grad, expected)
    params = ng.functional.params_from_weight(graph.arch, w)
    assert all(p.data_ptr() >= w.data_ptr() for p in params.values())  # views into w


def test_batchnorm_is_represented_not_folded() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).eval()
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
    graph = ng.to_neural_graph(model)
    bn = graph.edge_pos[:, 0] == 1
    assert int(bn.sum()) == 8  # gamma (diagonal edges) + beta (bias edges)
    x = torch.randn(6, 3)
    assert torch.equal(graph.to_module()(x), model(x))
    torch.testing.assert_close(graph.forward(x), model(x))


def test_dtype_preserved() -> None:
    model = nn.Sequential(nn.Linear(3, 2)).double()
    graph = ng.to_neural_graph(model)
    assert graph.weight.dtype == torch.float64
    assert graph.to_module()[0].weight.dtype == torch.float64
