r"""Position codes for initial hidden states.

Every edge carries five integer positions (``NeuralGraph.edge_pos`` columns):

=====  ===================================================================
col    axis
=====  ===================================================================
0      layer (index of the parametrised layer)
1      backward neuron: source neuron's index within its layer (channel)
2      forward neuron: target neuron's index within its layer (channel)
3      kernel row (``0`` for dense edges; spatial row ``y`` after Flatten)
4      kernel column (kernel position of Conv1d; spatial ``x`` after Flatten)
=====  ===================================================================

A hidden-state code gives the rule a way to tell weights apart when all weights
start equal (e.g. zero).
"""

from __future__ import annotations

from typing import List, Optional

import torch
from torch import Tensor

__all__ = ["POSITION_AXES", "position_code", "axis_dims", "nested_code_map"]

POSITION_AXES = ("layer", "backward_neuron", "forward_neuron", "kernel_row", "kernel_col")


def axis_dims(dim: int, num_axes: int = 5) -> List[int]:
    """How many of ``dim`` code channels each axis gets (earlier axes get the rest)."""
    base, rest = divmod(dim, num_axes)
    return [base + (1 if a < rest else 0) for a in range(num_axes)]


def position_code(edge_pos: Tensor, dim: int, kind: str = "sinusoidal",
                  base: float = 1000.0, dtype: torch.dtype = torch.float32) -> Tensor:
    r"""Encode edge positions into a ``[E, dim]`` hidden-state initialisation.

    ``"sinusoidal"``: axis :math:`a` gets :math:`d_a` channels,
    channel :math:`j` is :math:`\sin(p_a \omega_{\lfloor j/2 \rfloor})` for even
    :math:`j` and :math:`\cos(\cdot)` for odd :math:`j`, with
    :math:`\omega_k = \mathrm{base}^{-2k/d_a}`.
    ``"binary"``: the low bits of each position mapped to :math:`\pm 1`.
    ``"zeros"``: all zeros.

    Args:
        edge_pos (Tensor): integer positions ``[E, 5]``.
        dim (int): code width ``H``.
        kind (str, optional): ``"sinusoidal"``, ``"binary"`` or ``"zeros"``.
            (default: ``"sinusoidal"``)
        base (float, optional): longest wavelength of the sinusoids.
            (default: ``1000.0``)

    Shapes:
        - **input:** ``[E, 5]``
        - **output:** ``[E, dim]``
    """
    if edge_pos.dim() != 2:
        raise ValueError(f"edge_pos must be [E, A], got shape {tuple(edge_pos.shape)}")
    if dim < 0:
        raise ValueError(f"hidden dim must be >= 0, got {dim}")
    num_edges, num_axes = edge_pos.shape
    out = torch.zeros(num_edges, dim, dtype=dtype, device=edge_pos.device)
    if kind == "zeros" or dim == 0:
        return out
    if kind not in ("sinusoidal", "binary"):
        raise ValueError(f"unknown position code {kind!r} (use 'sinusoidal', 'binary' or 'zeros')")
    if num_edges and int(edge_pos.min()) < 0:
        raise ValueError("edge positions must be non-negative")
    col = 0
    for a, d in enumerate(axis_dims(dim, num_axes)):
        if d == 0:
            continue
        # positions are small non-negative integers: code each distinct value once, then gather
        p = edge_pos[:, a]
        values = torch.arange(int(p.max()) + 1 if num_edges else 1, device=edge_pos.device)
        j = torch.arange(d, device=edge_pos.device)
        if kind == "sinusoidal":
            freq = base ** (-2.0 * torch.div(j, 2, rounding_mode="floor").to(dtype) / max(d, 2))
            ang = values.to(dtype).unsqueeze(1) * freq  # (P, d)
            table = torch.where(j % 2 == 0, torch.sin(ang), torch.cos(ang))
        else:
            table = ((values.unsqueeze(1) >> j) & 1).to(dtype) * 2 - 1
        out[:, col:col + d] = table[p]
        col += d
    return out


def nested_code_map(old_dim: int, new_dim: int, kind: str = "sinusoidal", old_base: float = 1000.0,
                    new_base: Optional[float] = None, max_position: int = 1024) -> List[int]:
    r"""Where each channel of a ``old_dim``-wide position code sits in a ``new_dim``-wide one.

    A rule trained on the narrow code can be widened to the wide one without
    changing its function (:func:`neuralgraph.meta.widen.widen_rule`) only if
    every old channel reappears, unchanged, in the new code.  For the sinusoidal
    code this holds, for instance, from 10 to 20 channels (each axis keeps its
    frequency-1 pair and gains a lower frequency).  The match is checked on
    every position ``0 .. max_position - 1`` of every axis, in float64.

    Returns:
        list of int: ``old_dim`` distinct indices into the new code.

    Raises:
        ValueError: ``new_dim < old_dim``, or an old channel has no equal
            channel in the new code (the message names the axis and channel).
    """
    if new_dim < old_dim:
        raise ValueError(f"position code cannot shrink ({old_dim} -> {new_dim} channels)")
    new_base = old_base if new_base is None else new_base
    num_axes = len(POSITION_AXES)
    pos = torch.arange(max_position).unsqueeze(1).repeat(1, num_axes)
    old = position_code(pos, old_dim, kind, base=old_base, dtype=torch.float64)
    new = position_code(pos, new_dim, kind, base=new_base, dtype=torch.float64)
    # channels are grouped by axis (axis_dims): an old channel may only move within its own axis
    old_axis = [a for a, d in enumerate(axis_dims(old_dim, num_axes)) for _ in range(d)]
    new_axis = [a for a, d in enumerate(axis_dims(new_dim, num_axes)) for _ in range(d)]
    out: List[int] = []
    for c in range(old_dim):
        hits = [j for j in range(new_dim) if new_axis[j] == old_axis[c] and j not in out
                and torch.allclose(new[:, j], old[:, c], rtol=0.0, atol=1e-9)]
        if not hits:
            raise ValueError(f"the {old_dim}-channel {kind} code (base {old_base:g}) is not nested in the "
                             f"{new_dim}-channel one (base {new_base:g}): channel {c} "
                             f"(axis {POSITION_AXES[old_axis[c]]}) has no equal channel")
        out.append(hits[0])
    return out
