r"""WANN tasks: MNIST downsampled to 16x16 and a batched torch cart-pole swing-up.

A task exposes ``num_inputs``, ``num_outputs``, ``output_act``,
``fitness(graphs, weights, generator) -> [P, W]`` (higher is better; the
search uses it) and ``score(graphs, weights) -> [P, W]`` (a fixed held-out
measure used to pick the champion).
"""

from __future__ import annotations

import math
import os
from typing import Callable, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from neuralgraph.wann.evaluate import compile_population, run_plan

__all__ = ["load_mnist16", "deskew", "MNISTTask", "CartPoleSwingUp", "CartPoleTask", "make_task"]

PathLike = Union[str, "os.PathLike[str]"]


def deskew(images: Tensor) -> Tensor:
    r"""Remove the slant of digit images by an affine shear from their second moments.

    The classic MNIST deskewing (used by the WANN MNIST preprocessing): shear
    ``x`` by ``-mu11 / mu02`` about the centre of mass, keeping the centre of
    mass at the image centre.

    Shapes:
        - **input / output:** ``[N, H, W]`` floats
    """
    n, h, w = images.shape
    ys = torch.arange(h, dtype=images.dtype, device=images.device).view(1, h, 1)
    xs = torch.arange(w, dtype=images.dtype, device=images.device).view(1, 1, w)
    total = images.sum((1, 2)).clamp_min(1e-8)
    cy = (images * ys).sum((1, 2)) / total
    cx = (images * xs).sum((1, 2)) / total
    mu02 = (images * (ys - cy.view(-1, 1, 1)) ** 2).sum((1, 2)) / total
    mu11 = (images * (ys - cy.view(-1, 1, 1)) * (xs - cx.view(-1, 1, 1))).sum((1, 2)) / total
    skew = torch.where(mu02.abs() > 1e-2, mu11 / mu02.clamp_min(1e-2), torch.zeros_like(mu02))
    # output pixel (y, x) samples input (y + oy, x + skew * (y - (h-1)/2) + ox); centre of mass -> centre
    oy = cy - (h - 1) / 2.0
    ox = cx - (w - 1) / 2.0
    # normalised coords: x_n = 2x/(w-1) - 1
    theta = torch.zeros(n, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = 1.0
    theta[:, 0, 1] = skew * (h - 1) / (w - 1)
    theta[:, 0, 2] = 2 * ox / (w - 1)
    theta[:, 1, 1] = 1.0
    theta[:, 1, 2] = 2 * oy / (h - 1)
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=True)
    return F.grid_sample(images.unsqueeze(1), grid, align_corners=True).squeeze(1)


def load_mnist16(split: str = "train", root: Optional[PathLike] = None, size: int = 16,
                 unskew: bool = True) -> Tuple[Tensor, Tensor]:
    """MNIST in ``[0, 1]``, deskewed and area-downsampled to ``size x size``, flattened.

    Files are read by :func:`neuralgraph.datasets.load_mnist` (checksum-verified
    against ``SHA256SUMS``; lookup: ``root``, ``$NEURALGRAPH_DATA``,
    ``<repo>/../shared/datasets``, ``/usr/share/datasets``).

    Shapes:
        - **output:** ``[N, size * size]`` float, ``[N]`` long labels
    """
    from neuralgraph.datasets import load_mnist

    images, labels = load_mnist("mnist", split, root)
    x = images.float() / 255.0
    if unskew:
        x = deskew(x)
    x = F.interpolate(x.unsqueeze(1), size=(size, size), mode="area").flatten(1)
    return x.contiguous(), labels


def _chunked(graphs: Sequence, x: Tensor, weights: Tensor, chunk: int, fn: Callable[[Tensor], Tensor]) -> Tensor:
    """``fn`` of the ``[P, O, W, B]`` outputs, a chunk of networks at a time, concatenated."""
    outs = []
    for i in range(0, len(graphs), chunk):
        plan = compile_population(graphs[i:i + chunk], device=x.device)
        outs.append(fn(run_plan(plan, x, weights, layout="POWB")))
    return torch.cat(outs)


def cross_entropy_powb(logits: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy per (network, weight) of ``[P, O, W, B]`` logits and labels ``[B]`` -> ``[P, W]``."""
    p, o, w, b = logits.shape
    pick = logits.gather(1, y.view(1, 1, 1, b).expand(p, 1, w, b)).squeeze(1)  # (P, W, B)
    return (torch.logsumexp(logits, dim=1) - pick).mean(-1)


def accuracy_powb(logits: Tensor, y: Tensor) -> Tensor:
    """Accuracy per (network, weight) of ``[P, O, W, B]`` logits -> ``[P, W]``."""
    return (logits.argmax(1) == y).float().mean(-1)


class MNISTTask:
    r"""MNIST 16x16 classification; fitness is the negative cross-entropy on a random batch.

    The last ``val_size`` training images (after a fixed shuffle) are held out
    for :meth:`score` (mean accuracy), which picks the champion; the test split
    is only used in reporting.

    Args:
        batch_size (int, optional): fitness batch. (default: ``1000``)
        val_size (int, optional): held-out training images. (default: ``5000``)
        root (path, optional): MNIST folder.
        chunk (int, optional): networks evaluated per call (memory bound). (default: ``128``)
        device (str, optional): where to run. (default: ``"cpu"``)
    """

    num_inputs, num_outputs, output_act = 256, 10, "linear"

    def __init__(self, batch_size: int = 1000, val_size: int = 5000, root: Optional[PathLike] = None,
                 chunk: int = 128, device: str = "cpu", data: Optional[Tuple[Tensor, Tensor]] = None) -> None:
        self.batch_size, self.val_size, self.chunk = batch_size, val_size, chunk
        self.device = torch.device(device)
        x, y = load_mnist16("train", root) if data is None else data
        perm = torch.randperm(x.size(0), generator=torch.Generator().manual_seed(0))
        x, y = x[perm].to(self.device), y[perm].to(self.device)
        self.x_train, self.y_train = x[:-val_size], y[:-val_size]
        self.x_val, self.y_val = x[-val_size:], y[-val_size:]

    def fitness(self, graphs: Sequence, weights: Tensor, generator: torch.Generator) -> Tensor:
        idx = torch.randint(self.x_train.size(0), (self.batch_size,), generator=generator)
        x, y = self.x_train[idx.to(self.device)], self.y_train[idx.to(self.device)]
        nll = _chunked(graphs, x, weights.to(self.device), self.chunk, lambda z: cross_entropy_powb(z, y))
        return torch.nan_to_num(-nll, nan=-1e9, neginf=-1e9, posinf=-1e9).cpu()  # (P, W)

    def score(self, graphs: Sequence, weights: Tensor) -> Tensor:
        return _chunked(graphs, self.x_val, weights.to(self.device), max(1, self.chunk // 8),
                        lambda z: accuracy_powb(z, self.y_val)).cpu()


class CartPoleSwingUp:
    r"""Batched cart-pole swing-up in torch (dynamics of the WANN ``CartPoleSwingUp`` task).

    State ``(x, x_dot, theta, theta_dot)`` with ``theta = 0`` upright; starts
    hanging down (``theta ~ pi``) with N(0, 0.2) noise.  Observation
    ``(x, x_dot, cos theta, sin theta, theta_dot)``; action in ``[-1, 1]``
    scales a force of 10 N; reward ``(cos theta + 1)/2 * cos(pi x / (2 x_lim))``
    while the cart stays within ``|x| <= 2.4``; an episode ends there.

    Shapes:
        - **state:** ``[N, 4]``, **obs:** ``[N, 5]``, **action:** ``[N]``
    """

    g, m_c, m_p, length, force_mag, dt, b, x_threshold = 9.82, 0.5, 0.5, 0.6, 10.0, 0.01, 0.1, 2.4

    def __init__(self, num_envs: int, generator: Optional[torch.Generator] = None,
                 device: str = "cpu", dtype: torch.dtype = torch.float32, noise: float = 0.2) -> None:
        self.num_envs, self.device, self.dtype = num_envs, torch.device(device), dtype
        init = torch.randn(num_envs, 4, generator=generator, dtype=torch.float64) * noise
        init[:, 2] += math.pi
        self.state = init.to(self.device, dtype)
        self.alive = torch.ones(num_envs, dtype=torch.bool, device=self.device)

    def obs(self) -> Tensor:
        x, x_dot, th, th_dot = self.state.unbind(-1)
        return torch.stack([x, x_dot, torch.cos(th), torch.sin(th), th_dot], dim=-1)

    def reward(self) -> Tensor:
        x, th = self.state[:, 0], self.state[:, 2]
        r = (torch.cos(th) + 1.0) / 2.0 * torch.cos(x / self.x_threshold * (math.pi / 2.0))
        return torch.where(self.alive, r, torch.zeros_like(r))

    def step(self, action: Tensor) -> Tensor:
        """Advance one step (frozen once an episode ended); returns the reward ``[N]``."""
        u = torch.nan_to_num(action, nan=0.0).clamp(-1.0, 1.0) * self.force_mag
        x, x_dot, th, th_dot = self.state.unbind(-1)
        s, c = torch.sin(th), torch.cos(th)
        total_m, m_p_l = self.m_p + self.m_c, self.m_p * self.length
        xdd = (-2 * m_p_l * th_dot ** 2 * s + 3 * self.m_p * self.g * s * c + 4 * u - 4 * self.b * x_dot) / (
            4 * total_m - 3 * self.m_p * c ** 2)
        thdd = (-3 * m_p_l * th_dot ** 2 * s * c + 6 * total_m * self.g * s + 6 * (u - self.b * x_dot) * c) / (
            4 * self.length * total_m - 3 * m_p_l * c ** 2)
        new = torch.stack([x + x_dot * self.dt, x_dot + xdd * self.dt, th + th_dot * self.dt,
                           th_dot + thdd * self.dt], dim=-1)
        self.state = torch.where(self.alive.unsqueeze(-1), new, self.state)
        self.alive = self.alive & (self.state[:, 0].abs() <= self.x_threshold)
        return self.reward()


class CartPoleTask:
    r"""Cart-pole swing-up control: fitness is the mean episode return per (network, weight).

    All ``P x W x episodes`` rollouts run as one batched environment; each step
    is one :func:`run_plan` call with per-network inputs ``[P, W, episodes, 5]``.

    Args:
        episodes (int, optional): rollouts per (network, weight). (default: ``4``)
        steps (int, optional): episode length (the WANN task uses 1000). (default: ``1000``)
        val_episodes (int, optional): rollouts for :meth:`score`. (default: ``8``)
    """

    num_inputs, num_outputs, output_act = 5, 1, "linear"

    def __init__(self, episodes: int = 4, steps: int = 1000, val_episodes: int = 8, device: str = "cpu") -> None:
        self.episodes, self.steps, self.val_episodes = episodes, steps, val_episodes
        self.device = torch.device(device)

    def rollout(self, graphs: Sequence, weights: Tensor, episodes: int, generator: torch.Generator) -> Tensor:
        """Mean return ``[P, W]`` over ``episodes`` rollouts."""
        p, w = len(graphs), weights.numel()
        plan = compile_population(graphs, device=self.device)
        env = CartPoleSwingUp(p * w * episodes, generator=generator, device=str(self.device))
        weights = weights.to(self.device)
        ret = torch.zeros(p * w * episodes, device=self.device)
        for _ in range(self.steps):
            obs = env.obs().view(p, w, episodes, 5)
            act = run_plan(plan, obs, weights)[..., 0]  # (P, W, episodes)
            ret += env.step(act.reshape(-1))
        return ret.view(p, w, episodes).mean(-1).cpu()

    def fitness(self, graphs: Sequence, weights: Tensor, generator: torch.Generator) -> Tensor:
        return self.rollout(graphs, weights, self.episodes, generator)

    def score(self, graphs: Sequence, weights: Tensor) -> Tensor:
        return self.rollout(graphs, weights, self.val_episodes, torch.Generator().manual_seed(12345))


def make_task(name: str, **kwargs: object) -> Union[MNISTTask, CartPoleTask]:
    """``"mnist"`` -> :class:`MNISTTask`, ``"cartpole"`` -> :class:`CartPoleTask`."""
    tasks = {"mnist": MNISTTask, "cartpole": CartPoleTask}
    if name not in tasks:
        raise ValueError(f"unknown WANN task {name!r}; choose from {sorted(tasks)}")
    return tasks[name](**kwargs)  # type: ignore[arg-type]
