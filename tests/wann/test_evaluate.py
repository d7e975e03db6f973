import numpy as np
import pytest
import torch

from neuralgraph.wann import DEFAULT_WEIGHTS, compile_population, evaluate, run_plan
from tests.wann.helpers import random_dag, reference_forward


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_evaluator_matches_per_node_reference(seed, device):
    rng = np.random.default_rng(seed)
    graphs = [random_dag(rng, mutations=int(rng.integers(0, 40))) for _ in range(5)]
    assert any(g.num_hidden > 2 for g in graphs)
    x = torch.randn(7, 5, dtype=torch.float64)
    out = evaluate(graphs, x.to(device), DEFAULT_WEIGHTS).cpu()
    assert out.shape == (5, 6, 7, 3)
    for p, g in enumerate(graphs):
        for j, w in enumerate(DEFAULT_WEIGHTS):
            torch.testing.assert_close(out[p, j], reference_forward(g, x, w), atol=1e-10, rtol=1e-10)


def test_per_network_inputs_match_shared(device):
    rng = np.random.default_rng(5)
    graphs = [random_dag(rng) for _ in range(4)]
    w = torch.tensor([-1.0, 0.5, 2.0], device=device)
    x = torch.randn(4, 3, 6, 5, device=device)
    plan = compile_population(graphs, device=device)
    out = run_plan(plan, x, w)
    for p in range(4):
        for j in range(3):
            single = run_plan(compile_population([graphs[p]], device=device), x[p, j], w[j:j + 1])
            torch.testing.assert_close(out[p, j], single[0, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(run_plan(plan, x, w, layout="POWB").permute(0, 2, 3, 1), out)


def test_evaluator_errors():
    rng = np.random.default_rng(0)
    g = random_dag(rng)
    with pytest.raises(ValueError, match=r"x must be \[B, 5\]"):
        evaluate([g], torch.randn(3, 4), [1.0])
    other = random_dag(rng, num_inputs=4)
    with pytest.raises(Exception, match="same inputs/outputs"):
        evaluate([g, other], torch.randn(3, 5), [1.0])
