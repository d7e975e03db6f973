r"""Architecture families for meta-training and evaluation grids.

* MLP family ``[in, X, Y, out]`` (any number of hidden widths), ReLU between
  layers: :func:`mlp`, :func:`mlp_grid`, :func:`sample_mlp`.
* CNN family (seed 000): three conv layers with :math:`32m`, :math:`64m`,
  :math:`128m` filters of kernel size :math:`k` (padding :math:`\lfloor k/2
  \rfloor`, ReLU, 2x2 max-pool after each), ``Flatten``, a dense layer of
  width :math:`h`, ReLU and the ``num_classes`` outputs: :func:`cnn`,
  :func:`sample_cnn`.

Architectures are also written as strings, parsed by :func:`parse_arch`:
``"784-50-50-10"`` (MLP) and ``"cnn:m=1.5,k=3,h=100"`` (CNN).
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

__all__ = ["mlp", "mlp_grid", "sample_mlp", "cnn", "cnn_spatial", "sample_cnn", "parse_arch",
           "arch_name", "build_arch"]

_ACTS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "sigmoid": nn.Sigmoid}


def _act(name: str) -> nn.Module:
    if name not in _ACTS:
        raise ValueError(f"unknown activation {name!r}; use one of {sorted(_ACTS)}")
    return _ACTS[name]()


def mlp(sizes: Sequence[int], activation: str = "relu", bias: bool = True) -> nn.Sequential:
    """``nn.Sequential`` MLP with layer widths ``sizes = [in, h1, ..., out]``."""
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"MLP sizes must be >= 2 positive widths, got {sizes}")
    layers: List[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1], bias=bias))
        if i < len(sizes) - 2:
            layers.append(_act(activation))
    return nn.Sequential(*layers)


def mlp_grid(n_in: int, xs: Sequence[int], ys: Sequence[int], n_out: int) -> List[List[int]]:
    """All ``[n_in, X, Y, n_out]`` for X in ``xs`` and Y in ``ys`` (row-major in X)."""
    return [[n_in, int(x), int(y), n_out] for x in xs for y in ys]


def sample_mlp(generator: torch.Generator, n_in: int, n_out: int, widths: Sequence[int],
               depth: Tuple[int, int] = (2, 2)) -> List[int]:
    """Random MLP sizes: ``depth`` hidden layers, each width drawn from ``widths``."""
    lo, hi = depth
    n_hidden = int(torch.randint(lo, hi + 1, (1,), generator=generator))
    hidden = [int(widths[int(torch.randint(len(widths), (1,), generator=generator))])
              for _ in range(n_hidden)]
    return [n_in, *hidden, n_out]


def cnn_spatial(k: int, image_size: int = 28) -> int:
    """Side of the feature map after the three conv + pool blocks."""
    s = image_size
    for _ in range(3):
        s = (s + 2 * (k // 2) - k + 1) // 2
    if s < 1:
        raise ValueError(f"kernel {k} leaves no feature map for {image_size}px inputs")
    return s


def cnn(m: float = 1.0, k: int = 3, h: int = 100, in_channels: int = 1, num_classes: int = 10,
        image_size: int = 28) -> nn.Sequential:
    """The seed-000 CNN family: ``32m, 64m, 128m`` filters, kernel ``k``, dense width ``h``."""
    chans = [in_channels] + [max(1, int(round(c * m))) for c in (32, 64, 128)]
    layers: List[nn.Module] = []
    for i in range(3):
        layers += [nn.Conv2d(chans[i], chans[i + 1], k, padding=k // 2), nn.ReLU(), nn.MaxPool2d(2)]
    s = cnn_spatial(k, image_size)
    layers += [nn.Flatten(), nn.Linear(chans[3] * s * s, h), nn.ReLU(), nn.Linear(h, num_classes)]
    return nn.Sequential(*layers)


def sample_cnn(generator: torch.Generator, ms: Sequence[float] = (1.0,), ks: Sequence[int] = (3, 5),
               hs: Sequence[int] = (100,)) -> Tuple[float, int, int]:
    """Random ``(m, k, h)`` from the given choices."""
    def pick(seq: Sequence) -> object:
        return seq[int(torch.randint(len(seq), (1,), generator=generator))]

    return float(pick(ms)), int(pick(ks)), int(pick(hs))  # type: ignore[arg-type]


def parse_arch(spec: str | Sequence[int]) -> Tuple[str, dict]:
    """``"784-50-50-10"`` -> ``("mlp", {"sizes": [...]})``; ``"cnn:m=1,k=3,h=100"`` -> ``("cnn", {...})``."""
    if not isinstance(spec, str):
        return "mlp", {"sizes": [int(s) for s in spec]}
    s = spec.strip()
    if s.startswith("cnn"):
        kw: dict = {}
        body = s.split(":", 1)[1] if ":" in s else ""
        for part in filter(None, body.split(",")):
            key, _, val = part.partition("=")
            if key not in ("m", "k", "h"):
                raise ValueError(f"bad CNN spec {spec!r}: unknown key {key!r} (use m, k, h)")
            kw[key] = float(val) if key == "m" else int(val)
        return "cnn", kw
    try:
        sizes = [int(p) for p in s.replace("x", "-").replace(",", "-").split("-") if p]
    except ValueError:
        raise ValueError(f"bad architecture {spec!r}; use '784-50-50-10' or 'cnn:m=1,k=3,h=100'") from None
    return "mlp", {"sizes": sizes}


def arch_name(spec: str | Sequence[int]) -> str:
    """Canonical string of an architecture spec."""
    kind, kw = parse_arch(spec)
    if kind == "mlp":
        return "-".join(str(s) for s in kw["sizes"])
    return "cnn:" + ",".join(f"{k}={kw[k]}" for k in ("m", "k", "h") if k in kw)


def build_arch(spec: str | Sequence[int], activation: str = "relu",
               image_size: int = 28, in_channels: int = 1,
               num_classes: Optional[int] = None) -> nn.Sequential:
    """The ``nn.Sequential`` for a spec (see :func:`parse_arch`)."""
    kind, kw = parse_arch(spec)
    if kind == "mlp":
        return mlp(kw["sizes"], activation)
    return cnn(in_channels=in_channels, num_classes=num_classes or 10, image_size=image_size, **kw)
