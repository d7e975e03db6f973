r"""Zero-out perturbation (Barot, ALIFE 2024): a whole random layer plus a fraction of the other weights set to 0."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

__all__ = ["zero_out_mask", "zero_out"]


def zero_out_mask(edge_layer: Tensor, fraction: float = 0.3, generator: Optional[torch.Generator] = None,
                  layer: Optional[int] = None) -> Tuple[Tensor, int]:
    """Boolean mask ``[E]`` of the edges to zero, and the chosen layer.

    Args:
        edge_layer (Tensor): layer id of each edge ``[E]`` (``graph.edge_pos[:, 0]``).
        fraction (float): share of the *other* edges zeroed at random. (default: ``0.3``)
        generator (torch.Generator, optional): RNG.
        layer (int, optional): the layer to wipe (default: uniformly random).
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"zero-out fraction must lie in [0, 1], got {fraction}")
    layers = torch.unique(edge_layer)
    if layer is None:
        layer = int(layers[int(torch.randint(layers.numel(), (1,), generator=generator))])
    elif layer not in layers.tolist():
        raise ValueError(f"layer {layer} not in the graph's layers {layers.tolist()}")
    rand = torch.rand(edge_layer.shape, generator=generator) < fraction
    return (edge_layer == layer) | rand.to(edge_layer.device), layer


def zero_out(weight: Tensor, edge_layer: Tensor, fraction: float = 0.3,
             generator: Optional[torch.Generator] = None, layer: Optional[int] = None) -> Tuple[Tensor, int]:
    """``weight`` with a random layer and ``fraction`` of the remaining edges set to 0 (out of place).

    Shapes:
        - **weight:** ``[E]``; **output:** ``[E]``
    """
    mask, layer = zero_out_mask(edge_layer, fraction, generator, layer)
    return weight.masked_fill(mask, 0.0), layer
