r"""Run networks straight from edge-weight vectors (differentiable).

Parameters are views of slices of the flat weight vector (``narrow`` + ``view``),
passed to :func:`torch.func.functional_call` on a cached template module, so
gradients flow back into the weight vector and nothing is copied edge by edge.
"""

from __future__ import annotations

from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch.func import functional_call

from neuralgraph.architecture import Architecture, Op
from neuralgraph.errors import NeuralGraphError, WeightShapeError

__all__ = ["params_from_weight", "forward", "forward_batch", "node_activations", "edge_correlations"]


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


def _op_outputs(arch: Architecture, weight: Tensor, x: Tensor) -> Iterator[Tuple[Op, Tensor]]:
    """Each op of ``arch`` with its output, running the chain on ``x`` with parameters from ``weight``."""
    params = params_from_weight(arch, weight)
    buffers = arch.buffers(weight.device)
    module = arch.template
    y = x
    for i, op in enumerate(arch.ops):
        local = {n.split(".", 1)[1]: t for n, t in {**params, **buffers}.items()
                 if n.split(".", 1)[0] == str(i)}
        y = functional_call(module[i], local, (y,)) if local else module[i](y)
        yield op, y


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
    out = torch.ones(graph.num_nodes, dtype=w.dtype, device=w.device)  # type: ignore[attr-defined]
    blocks = _node_blocks(graph)

    def summary(t: Tensor) -> Tensor:
        return t.mean(0) if t.dim() == 2 else t.mean(dim=[0] + list(range(2, t.dim())))

    values: List[Tensor] = [summary(x)]
    frozen = False  # a Flatten closed the current block
    for op, y in _op_outputs(arch, w, x):
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


def _standardize(t: Tensor, eps: float) -> Tensor:
    """Per-column ``(t - mean) / sqrt(var + eps)`` over the batch (dim 0)."""
    centred = t - t.mean(0, keepdim=True)
    return centred * torch.rsqrt(centred.pow(2).mean(0, keepdim=True) + eps)


def edge_correlations(graph: object, x: Tensor, weight: Optional[Tensor] = None,
                      target: Optional[Tensor] = None, eps: float = 1e-4) -> Tensor:
    r"""Correlation over a data batch between each edge's source and target neuron, ``[|E|]``.

    For an edge :math:`a \to b` of a ``Linear`` layer this is
    :math:`\mathrm{mean}_n(\tilde a_n \tilde b_n)` with
    :math:`\tilde a = (a - \bar a) / \sqrt{\mathrm{var}(a) + \epsilon}` over the batch, where
    a neuron's activity is its layer's output after the parameter-free ops that follow it (as in
    :func:`node_activations`) and an input neuron's activity is the input.  Bias edges start at a
    constant neuron and get ``0``; a neuron that is constant over the batch (a blank pixel, a dead
    ReLU) gives ``0`` too.  With ``target`` the output neurons' activity is the target (e.g. one-hot
    labels) instead of the network's output, so the last layer's edges carry a supervised, still
    local, signal.  Differentiable w.r.t. ``weight``.  Only chains whose parametrised layers are
    all ``Linear`` are supported.

    Args:
        graph (NeuralGraph): one neural graph (not a ``Batch``).
        x (Tensor): the data batch.
        weight (Tensor, optional): network weights ``[|E|]`` (default ``graph.weight``).
        target (Tensor, optional): ``[B, n_out]`` activity of the output neurons, or
            integer class labels ``[B]`` (one-hot encoded).
        eps (float): added to each variance.

    Shapes:
        - **x:** ``[B, *input_shape]``, ``B >= 2``
        - **output:** ``[|E|]``, in edge (parameter memory) order
    """
    arch: Architecture = graph.arch  # type: ignore[attr-defined]
    w = graph.weight if weight is None else weight  # type: ignore[attr-defined]
    for op in arch.ops:
        if op.has_params and op.kind != "Linear":
            raise NeuralGraphError(f"edge_correlations supports Linear layers only; layer {op!r} "
                                   f"({op.path or op.kind}) is not one")
    if x.dim() < 2 or x.size(0) < 2:
        raise NeuralGraphError(f"edge_correlations needs a batch of >= 2 samples, got x of shape "
                               f"{tuple(x.shape)}")
    acts: List[Tensor] = [x.flatten(1)]  # per-sample activity of each neuron layer
    for op, y in _op_outputs(arch, w, x):
        if op.has_params:
            acts.append(y)
        elif op.kind != "Dropout":  # activation, Flatten: the layer's activity is what follows them
            acts[-1] = y.flatten(1)
    if target is not None:
        if target.dim() == 1 and not target.is_floating_point():  # class labels -> one-hot
            if int(target.min()) < 0 or int(target.max()) >= acts[-1].size(1):
                raise NeuralGraphError(f"labels must lie in [0, {acts[-1].size(1)}) for a network with "
                                       f"{acts[-1].size(1)} outputs, got {int(target.min())}..{int(target.max())}")
            target = torch.nn.functional.one_hot(target, acts[-1].size(1))
        if target.shape != acts[-1].shape:
            raise NeuralGraphError(f"target must have shape {tuple(acts[-1].shape)} (batch, outputs), "
                                   f"got {tuple(target.shape)}")
        acts[-1] = target.to(acts[-1].dtype)
    std = [_standardize(a, eps) for a in acts]
    layer = {i: k for k, i in enumerate(i for i, op in enumerate(arch.ops) if op.has_params)}
    parts = []
    for slot in arch.param_slots:  # memory order
        k = layer[slot.op_index]
        if slot.name.endswith(".weight"):  # [out, in], W's layout
            parts.append((std[k + 1].transpose(0, 1) @ std[k] / x.size(0)).reshape(-1))
        else:  # bias: from a constant neuron
            parts.append(w.new_zeros(slot.numel))
    return torch.cat(parts).to(w.dtype)
