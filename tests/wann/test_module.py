import numpy as np
import torch

from neuralgraph.wann import DEFAULT_WEIGHTS, WANNModule, evaluate
from tests.wann.helpers import random_dag


def test_to_module_equals_evaluator(device):
    rng = np.random.default_rng(7)
    graphs = [random_dag(rng, mutations=40) for _ in range(4)]
    x = torch.randn(9, 5, generator=torch.Generator().manual_seed(0)).to(device)
    out = evaluate(graphs, x, DEFAULT_WEIGHTS)
    out64 = evaluate(graphs, x.double(), DEFAULT_WEIGHTS)
    for p, g in enumerate(graphs):
        for j, w in enumerate(DEFAULT_WEIGHTS):
            m = g.to_module(w).to(device)
            # float32: summation order differs between the two, so allow float32 rounding growth
            torch.testing.assert_close(m(x), out[p, j], atol=1e-4, rtol=1e-4)
            # float64: the same function to 1e-10
            torch.testing.assert_close(m.double()(x.double()), out64[p, j], atol=1e-10, rtol=1e-10)


def test_module_trainable_repr_reset():
    g = random_dag(np.random.default_rng(2), mutations=20)
    m = g.to_module(0.5)
    assert isinstance(m, WANNModule) and m.weight.numel() == g.num_connections
    assert str(m) == f"WANNModule(5, 3, hidden={g.num_hidden}, connections={g.num_connections})"
    x = torch.randn(4, 5)
    m(x).pow(2).sum().backward()
    assert m.weight.grad is not None and m.weight.grad.abs().sum() > 0
    with torch.no_grad():
        m.weight.mul_(3.0)
    m.reset_parameters()
    assert torch.all(m.weight == 0.5)
    # individual weights change the function (it is no longer a shared-weight net)
    with torch.no_grad():
        m.weight[0] += 1.0
    assert not torch.allclose(m(x), g.forward(x, 0.5))
