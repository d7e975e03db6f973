import math

import pytest
import torch

from neuralgraph.wann import CartPoleSwingUp, CartPoleTask, WANNGraph
from neuralgraph.wann.tasks import deskew


def _env(states):
    env = CartPoleSwingUp(len(states), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    env.state = torch.tensor(states, dtype=torch.float64)
    return env


def test_cartpole_equilibria_and_reward():
    env = _env([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, math.pi, 0.0]])  # upright, hanging, at rest
    torch.testing.assert_close(env.reward(), torch.tensor([1.0, 0.0], dtype=torch.float64))
    for _ in range(200):
        env.step(torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(env.state[:, 2], torch.tensor([0.0, math.pi], dtype=torch.float64), atol=1e-9,
                               rtol=0)
    torch.testing.assert_close(env.state[:, 0], torch.zeros(2, dtype=torch.float64), atol=1e-12, rtol=0)


def test_cartpole_physics_sanity():
    # a slightly tilted upright pole falls further; pushing right accelerates the cart right
    env = _env([[0.0, 0.0, 0.05, 0.0], [0.0, 0.0, math.pi, 0.0]])
    for _ in range(50):
        env.step(torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert env.state[0, 2] > 0.2 and env.state[1, 0] > 0.0 and env.state[1, 1] > 0.0
    # mirror symmetry: (x, v, th, w, u) -> (-x, -v, -th, -w, -u)
    a = _env([[0.3, 0.1, 2.0, -0.5]])
    b = _env([[-0.3, -0.1, -2.0, 0.5]])
    for t in range(100):
        u = torch.tensor([math.sin(0.1 * t)], dtype=torch.float64)
        a.step(u)
        b.step(-u)
    torch.testing.assert_close(a.state, -b.state)
    # leaving the track ends the episode: frozen state, zero reward afterwards
    c = _env([[2.39, 5.0, 0.0, 0.0]])
    r = [float(c.step(torch.ones(1, dtype=torch.float64))) for _ in range(5)]
    assert not bool(c.alive[0]) and r[-1] == 0.0 and r[-2] == 0.0


def test_cartpole_task_batched_returns():
    task = CartPoleTask(episodes=2, steps=30, val_episodes=2)
    graphs = [WANNGraph.minimal(5, 1, 1.0), WANNGraph.minimal(5, 1, 0.0)]
    fit = task.fitness(graphs, torch.tensor([-1.0, 1.0]), torch.Generator().manual_seed(0))
    assert fit.shape == (2, 2) and torch.all(fit >= 0) and torch.all(fit <= 30)
    assert torch.equal(task.score(graphs, torch.tensor([1.0])), task.score(graphs, torch.tensor([1.0])))


def test_deskew_straightens_a_slanted_bar():
    img = torch.zeros(1, 28, 28)
    for y in range(4, 24):
        x = 10 + (y - 4) // 2  # slanted stroke
        img[0, y, x:x + 2] = 1.0
    out = deskew(img)[0]
    cols = (out * torch.arange(28.0)).sum(1) / out.sum(1).clamp_min(1e-6)
    rows = out.sum(1) > 0.5
    assert cols[rows].std() < 0.6 < ((img[0] * torch.arange(28.0)).sum(1) / img[0].sum(1).clamp_min(1e-6))[4:24].std()


def test_mnist16_loader_if_available():
    from neuralgraph.wann import load_mnist16

    try:
        x, y = load_mnist16("test")
    except FileNotFoundError:
        pytest.skip("MNIST not available")
    assert x.shape == (10000, 256) and y.shape == (10000,)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
