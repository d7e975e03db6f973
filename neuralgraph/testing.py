"""Helpers for testing converters and rules: random models and neuron permutations.

Users writing their own rules can use these to check equivariance, e.g.::

    model, shape = random_mlp(torch.Generator().manual_seed(0))
    permuted, perms = permute_hidden(model, torch.Generator().manual_seed(1))
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn

from neuralgraph.architecture import extract_chain

__all__ = ["random_mlp", "random_cnn", "permute_hidden", "node_permutation"]

_ACTS = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.ELU, nn.LeakyReLU, nn.Identity)


def _randint(g: torch.Generator, lo: int, hi: int) -> int:
    """Uniform integer in ``[lo, hi]``."""
    return int(torch.randint(lo, hi + 1, (1,), generator=g))


def _act(g: torch.Generator) -> nn.Module:
    return _ACTS[_randint(g, 0, len(_ACTS) - 1)]()


def random_mlp(generator: Optional[torch.Generator] = None, max_layers: int = 5,
               max_width: int = 12, dropout: bool = True) -> Tuple[nn.Sequential, Tuple[int, ...]]:
    """A random MLP of 1-``max_layers`` Linear layers with random activations.

    Returns:
        (model, input_shape)
    """
    g = generator or torch.Generator().manual_seed(0)
    n_layers = _randint(g, 1, max_layers)
    widths = [_randint(g, 1, max_width) for _ in range(n_layers + 1)]
    layers: List[nn.Module] = []
    for i in range(n_layers):
        layers.append(nn.Linear(widths[i], widths[i + 1], bias=bool(_randint(g, 0, 3))))
        if i < n_layers - 1:
            if _randint(g, 0, 4) == 0:
                layers.append(nn.BatchNorm1d(widths[i + 1]))
            layers.append(_act(g))
            if dropout and _randint(g, 0, 4) == 0:
                layers.append(nn.Dropout(0.5))
    if _randint(g, 0, 5) == 0:
        layers.append(nn.Softmax(dim=-1))
    model = nn.Sequential(*layers)
    _randomise_bn(model, g)
    return model.eval(), (widths[0],)


def random_cnn(generator: Optional[torch.Generator] = None, max_conv: int = 4, max_channels: int = 6,
               max_dense: int = 2) -> Tuple[nn.Sequential, Tuple[int, ...]]:
    """A random CNN: 1-``max_conv`` convs (kernels 1-7, strides, paddings,
    dilations, pools, BatchNorm), Flatten, 1-``max_dense`` Linear layers.

    Conv1d or Conv2d is chosen at random.  Returns ``(model, input_shape)``.
    """
    g = generator or torch.Generator().manual_seed(0)
    two_d = bool(_randint(g, 0, 3))
    conv, pool_max, pool_avg, bn = (
        (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.BatchNorm2d) if two_d
        else (nn.Conv1d, nn.MaxPool1d, nn.AvgPool1d, nn.BatchNorm1d))
    size = _randint(g, 8, 20)
    c_in = _randint(g, 1, 3)
    input_shape = (c_in, size, size) if two_d else (c_in, size)
    layers: List[nn.Module] = []
    c = c_in
    for _ in range(_randint(g, 1, max_conv)):
        k = _randint(g, 1, min(7, size))
        stride = _randint(g, 1, 2)
        pad = _randint(g, 0, k // 2)
        dil = 1 if k == 1 or _randint(g, 0, 3) else 2
        if (k - 1) * dil + 1 > size + 2 * pad:
            dil = 1
        out = _randint(g, 1, max_channels)
        layers.append(conv(c, out, k, stride=stride, padding=pad, dilation=dil,
                           bias=bool(_randint(g, 0, 3))))
        size = (size + 2 * pad - dil * (k - 1) - 1) // stride + 1
        c = out
        if _randint(g, 0, 3) == 0:
            layers.append(bn(c))
        layers.append(_act(g))
        if size >= 4 and _randint(g, 0, 2) == 0:
            layers.append((pool_max if _randint(g, 0, 1) else pool_avg)(2))
            size //= 2
        if size < 2:
            break
    if _randint(g, 0, 4) == 0:
        layers.append(nn.AdaptiveAvgPool2d(2) if two_d else nn.AdaptiveAvgPool1d(2))
        size = 2
    layers.append(nn.Flatten())
    n_in = c * size * size if two_d else c * size
    for i in range(_randint(g, 1, max_dense)):
        last = i == max_dense - 1 or _randint(g, 0, 1) == 0
        n_out = 10 if last else _randint(g, 2, 16)
        layers.append(nn.Linear(n_in, n_out, bias=bool(_randint(g, 0, 3))))
        n_in = n_out
        if last:
            break
        layers.append(_act(g))
    model = nn.Sequential(*layers)
    _randomise_bn(model, g)
    return model.eval(), input_shape


def _randomise_bn(model: nn.Module, g: torch.Generator) -> None:
    """Give BatchNorm layers non-trivial statistics and affine parameters."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g))
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.randn(m.num_features, generator=g))
                    m.bias.copy_(torch.randn(m.num_features, generator=g))


def permute_hidden(model: nn.Module, generator: Optional[torch.Generator] = None
                   ) -> Tuple[nn.Sequential, List[Optional[Tensor]]]:
    """Randomly permute the hidden neurons (channels) of a supported model.

    Returns a new ``nn.Sequential`` computing the same function and, for every
    parametrised layer ``l``, the permutation ``perm`` of its outputs: output
    ``i`` of the permuted layer is output ``perm[i]`` of the original (``None``
    for the last layer, whose outputs stay fixed).  BatchNorm layers inherit
    the permutation of their input.
    """
    from neuralgraph.convert import to_module, to_neural_graph

    g = generator or torch.Generator().manual_seed(0)
    seq = to_module(to_neural_graph(model, hidden_dim=0))
    chain = extract_chain(seq)
    param_idx = [i for i, (op, _) in enumerate(chain) if op.has_params]
    perms: List[Optional[Tensor]] = []
    prev: Optional[Tensor] = None  # permutation of the current layer's inputs
    with torch.no_grad():
        for n, i in enumerate(param_idx):
            op, mod = chain[i]
            assert mod is not None
            if prev is not None:  # permute the inputs of this layer
                if op.kind.startswith("BatchNorm"):
                    for t in (mod.weight, mod.bias, mod.running_mean, mod.running_var):
                        t.copy_(t[prev])
                    perms.append(prev)
                    continue
                w = mod.weight
                if w.size(1) == prev.numel():
                    w.copy_(w[:, prev])
                else:  # Linear after Flatten: inputs are (channel, position) blocks
                    blocks = w.view(w.size(0), prev.numel(), -1)
                    w.copy_(blocks[:, prev].reshape(w.shape))
            if n == len(param_idx) - 1:
                perms.append(None)
                break
            p = torch.randperm(mod.weight.size(0), generator=g)
            mod.weight.copy_(mod.weight[p])
            if mod.bias is not None:
                mod.bias.copy_(mod.bias[p])
            perms.append(p)
            prev = p
    return seq, perms


def node_permutation(graph: object, perms: List[Optional[Tensor]]) -> Tensor:
    """Map node ids of the permuted model's graph to node ids of the original's.

    ``graph`` is the original model's graph; ``perms`` comes from
    :func:`permute_hidden`.  Returns ``mapping [|V|]`` with
    ``mapping[v_permuted] = v_original``.
    """
    layer, pos = graph.node_layer, graph.node_pos  # type: ignore[attr-defined]
    role = graph.node_role  # type: ignore[attr-defined]
    mapping = torch.arange(layer.numel())
    for l_idx, p in enumerate(perms):
        if p is None:
            continue
        block = ((layer == l_idx + 1) & (role != 3)).nonzero().view(-1)
        block = block[torch.argsort(pos[block])]
        mapping[block] = block[p]
    return mapping
