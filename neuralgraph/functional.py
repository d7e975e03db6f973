r"""Run networks straight from edge-weight vectors (differentiable).

Parameters are views of slices of the flat weight vector (``narrow`` + ``view``),
passed to :func:`torch.func.functional_call` on a cached template module, so
gradients flow back into the weight vector and nothing is copied edge by edge.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor
from torch.func import functional_call

from neuralgraph.architecture import Architecture
from neuralgraph.errors import NeuralGraphError, WeightShapeError

__all__ = ["params_from_weight", "forward", "forward_batch"]


def params_from_weight(arch: Architecture, weight: Tensor) -> Dict[str, Tensor]:
    """Parameter views of ``weight``, keyed by name in ``arch.build()``.

    Shapes:
        - **weight:** ``[|E|]``
    """
    if weight.dim() != 1 or weight.numel() != arch.num_params:
        raise WeightShapeError(
            f"weight vector must have shape ({arch.num_params},) for {arch!r}, "
            f"got {tuple(weight.shape)}")
    return {s.name: weight.narrow(0, s.offset, s.numel).view(s.shape) for s in arch.param_slots}


def forward(arch: Architecture, weight: Tensor, x: Tensor, training: bool = False) -> Tensor:
    """Evaluate the network ``arch`` with parameters ``weight`` on ``x``."""
    params = params_from_weight(arch, weight)
    module = arch.template
    module.train(training)
    state: Dict[str, Tensor] = dict(params)
    state.update(arch.buffers(weight.device))
    if x.dtype != weight.dtype and x.is_floating_point():
        raise NeuralGraphError(f"input dtype {x.dtype} does not match weight dtype {weight.dtype}")
    return functional_call(module, state, (x,))


def forward_batch(batch: object, x: Tensor | Sequence[Tensor], weight: Optional[Tensor] = None,
                  training: bool = False) -> List[Tensor]:
    """Evaluate every network of a PyG ``Batch`` of neural graphs.

    Args:
        batch (Batch): a batch of :class:`~neuralgraph.NeuralGraph`.
        x (Tensor or list of Tensor): one input shared by all networks, or one
            input per network.
        weight (Tensor, optional): ``[|E|]`` batched weights (default
            ``batch.weight``).

    Returns:
        list of Tensor: one output per graph.
    """
    archs = batch.arch  # type: ignore[attr-defined]
    w = batch.weight if weight is None else weight  # type: ignore[attr-defined]
    ptr = batch._slice_dict["weight"]  # type: ignore[attr-defined]
    if w.numel() != int(ptr[-1]):
        raise WeightShapeError(f"batched weight must have {int(ptr[-1])} entries, got {w.numel()}")
    xs = list(x) if isinstance(x, (list, tuple)) else [x] * len(archs)
    if len(xs) != len(archs):
        raise NeuralGraphError(f"got {len(xs)} inputs for {len(archs)} graphs")
    outs = []
    for i, arch in enumerate(archs):
        lo, hi = int(ptr[i]), int(ptr[i + 1])
        outs.append(forward(arch, w.narrow(0, lo, hi - lo), xs[i], training=training))
    return outs

