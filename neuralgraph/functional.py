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

__all__ = ["params_from_weight", "forward", "forward_batch", "node_activations"]


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



def _node_blocks(graph: object) -> List[Tensor]:
    """Node ids of each neuron layer (inputs, then each parametrised layer's outputs), by position."""
    layer, role, pos = graph.node_layer, graph.node_role, graph.node_pos  # type: ignore[attr-defined]
    blocks = []
    for lay in range(int(layer.max()) + 1):
        ids = ((layer == lay) & (role != 3)).nonzero().view(-1)
        blocks.append(ids[torch.argsort(pos[ids])])
    return blocks


def node_activations(graph: object, x: Tensor, weight: Optional[Tensor] = None) -> Tensor:
    r"""Mean activation of every neuron on a data batch ``x``, ``[|V|]``.

    A neuron's activation is the output of its layer after the parameter-free
    ops that follow it (activation, pooling; taken before ``Flatten``), averaged
    over the batch and, for channels, over space.  Input neurons get the mean
    input; bias neurons get ``1``.  Works on a single graph or a ``Batch``
    (each network sees the same ``x``).  Differentiable w.r.t. ``weight``.

    Shapes:
        - **x:** ``[B, *input_shape]``
        - **output:** ``[|V|]``
    """
    from torch_geometric.data import Batch

    if isinstance(graph, Batch):
        w = graph.weight if weight is None else weight  # type: ignore[attr-defined]
        ptr = graph._slice_dict["weight"]
        parts = []
        for i, g in enumerate(graph.to_data_list()):
            lo, hi = int(ptr[i]), int(ptr[i + 1])
            parts.append(node_activations(g, x, w.narrow(0, lo, hi - lo)))
        return torch.cat(parts)
    arch: Architecture = graph.arch  # type: ignore[attr-defined]
    w = graph.weight if weight is None else weight  # type: ignore[attr-defined]
    params = params_from_weight(arch, w)
    module = arch.template
    buffers = arch.buffers(w.device)
    out = torch.ones(graph.num_nodes, dtype=w.dtype, device=w.device)  # type: ignore[attr-defined]
    blocks = _node_blocks(graph)

    def summary(t: Tensor) -> Tensor:
        return t.mean(0) if t.dim() == 2 else t.mean(dim=[0] + list(range(2, t.dim())))

    values: List[Tensor] = [summary(x)]
    frozen = False  # a Flatten closed the current block
    y = x
    for i, op in enumerate(arch.ops):
        sub = module[i]
        local = {n.split(".", 1)[1]: t for n, t in {**params, **buffers}.items()
                 if n.split(".", 1)[0] == str(i)}
        y = functional_call(sub, local, (y,)) if local else sub(y)
        if op.has_params:
            values.append(summary(y))
            frozen = False
        elif op.kind == "Flatten":
            frozen = True
        elif not frozen and op.kind not in ("Dropout",):
            values[-1] = summary(y)
    if len(values) != len(blocks):
        raise NeuralGraphError(f"internal: {len(values)} activation blocks for {len(blocks)} node layers")
    for ids, v in zip(blocks, values):
        out = out.index_put((ids,), v.to(out.dtype))
    return out
