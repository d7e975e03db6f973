r"""``to_neural_graph`` and ``to_module``: exact, template-free round trips.

Layer table (``W`` = weight, ``b`` = bias, ``l`` = parametrised-layer index):

==============================  ==============================  ==========================
layer                           edge                            ``edge_pos``
==============================  ==============================  ==========================
``Linear W[o, i]``              ``in_i -> out_o``               ``(l, i, o, 0, 0)``
``Linear W[o, c*S + s]``        ``chan_c -> out_o``             ``(l, c, o, y, x)``,
  after ``Flatten`` of                                           ``(y, x) = divmod(s, W)``
  ``[C, H, W]``, ``S = H W``
``Conv2d W[o, c, u, v]``        ``chan_c -> out_o``             ``(l, c, o, u, v)``
``Conv1d W[o, c, u]``           ``chan_c -> out_o``             ``(l, c, o, 0, u)``
``BatchNorm gamma[c]``          ``chan_c -> chan'_c``           ``(l, c, c, 0, 0)``
any bias ``b[o]``               ``bias_l -> out_o``             ``(l, 0, o, 0, 0)``
==============================  ==============================  ==========================

Parameter-free layers (activations, pooling, Flatten, Dropout) become ``Op``
records on ``graph.arch`` and node attributes (``node_act``); they add no edges.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from neuralgraph.architecture import ACTIVATIONS, Architecture, Op, extract_chain
from neuralgraph.errors import NeuralGraphError, UnsupportedModuleError, WeightShapeError
from neuralgraph.graph import NeuralGraph
from neuralgraph.positional import position_code

__all__ = ["to_neural_graph", "to_module", "load_weight"]

_ROLE_INPUT, _ROLE_HIDDEN, _ROLE_OUTPUT, _ROLE_BIAS = 0, 1, 2, 3
_SPATIAL_OPS = ("MaxPool", "AvgPool", "AdaptiveAvgPool", "AdaptiveMaxPool", "Dropout1d", "Dropout2d")


class _Builder:
    """Accumulates nodes and edges while walking the chain."""

    def __init__(self) -> None:
        self.num_nodes = 0
        self.node_cols: Dict[str, List[Tensor]] = {k: [] for k in ("layer", "pos", "act", "role")}
        self.src: List[Tensor] = []
        self.dst: List[Tensor] = []
        self.pos: List[Tensor] = []
        self.kind: List[Tensor] = []

    def add_nodes(self, count: int, layer: int, role: int) -> Tensor:
        ids = torch.arange(self.num_nodes, self.num_nodes + count)
        self.num_nodes += count
        self.node_cols["layer"].append(torch.full((count,), layer, dtype=torch.long))
        self.node_cols["pos"].append(torch.arange(count))
        self.node_cols["act"].append(torch.zeros(count, dtype=torch.long))
        self.node_cols["role"].append(torch.full((count,), role, dtype=torch.long))
        return ids

    def set_act(self, ids: Tensor, code: int) -> None:
        acts = torch.cat(self.node_cols["act"])
        acts[ids] = code
        self.node_cols["act"] = [acts]

    def add_edges(self, src: Tensor, dst: Tensor, layer: int, b_pos: Tensor, f_pos: Tensor,
                  krow: Tensor | int, kcol: Tensor | int, kind: int) -> None:
        n = src.numel()
        pos = torch.empty(n, 5, dtype=torch.long)
        pos[:, 0] = layer
        pos[:, 1] = b_pos
        pos[:, 2] = f_pos
        pos[:, 3] = krow
        pos[:, 4] = kcol
        self.src.append(src)
        self.dst.append(dst)
        self.pos.append(pos)
        self.kind.append(torch.full((n,), kind, dtype=torch.long))


def _spatial_shapes(ops: Sequence[Op], input_shape: Optional[Tuple[int, ...]]) -> List[Optional[Tuple[int, ...]]]:
    """Per-op output shapes (without batch) from a meta-device dry run, if the input is known."""
    if input_shape is None:
        return [None] * len(ops)
    shapes: List[Optional[Tuple[int, ...]]] = []
    x = torch.empty((1,) + tuple(input_shape), device="meta")
    with torch.device("meta"):
        for op in ops:
            try:
                x = op.build().eval()(x)
            except Exception as exc:  # noqa: BLE001
                raise WeightShapeError(
                    f"input_shape {tuple(input_shape)} does not fit layer {op.path or op.kind!r} "
                    f"({op!r}): input {tuple(x.shape)}: {exc}") from exc
            shapes.append(tuple(x.shape[1:]))
    return shapes


def _gather_params(chain: Sequence[Tuple[Op, Optional[nn.Module]]], model: nn.Module) -> List[Tensor]:
    """Parameters in edge order, with checks for sharing, dtype and finiteness."""
    params: List[Tensor] = []
    owner: Dict[int, str] = {}
    for op, mod in chain:
        if mod is None:
            continue
        for name, p in mod.named_parameters(recurse=False):
            path = f"{op.path}.{name}" if op.path else name
            if id(p) in owner:
                raise NeuralGraphError(
                    f"parameter {path!r} is shared with {owner[id(p)]!r}: tied parameters cannot be "
                    "represented as distinct edges; untie them (e.g. clone) first")
            owner[id(p)] = path
            if not torch.isfinite(p.detach()).all():
                bad = int((~torch.isfinite(p.detach())).sum())
                raise NeuralGraphError(f"parameter {path!r} has {bad} NaN/inf values")
            params.append(p)
    unused = [n for n, p in model.named_parameters() if id(p) not in owner]
    if unused:
        raise UnsupportedModuleError(
            "", type(model).__qualname__,
            f"parameters {unused} are not used by the layer chain; they would be dropped")
    dtypes = {p.dtype for p in params}
    if len(dtypes) > 1:
        raise NeuralGraphError(f"all parameters must share one dtype, got {sorted(map(str, dtypes))}")
    return params


def to_neural_graph(model: nn.Module, hidden_dim: int = 16,
                    input_shape: Optional[Sequence[int]] = None,
                    hidden_init: str = "sinusoidal") -> NeuralGraph:
    r"""Convert a feed-forward or convolutional model into a :class:`NeuralGraph`.

    Args:
        model (nn.Module): an ``nn.Sequential`` or a module whose forward is a
            single chain of supported layers (traced with ``torch.fx``).
        hidden_dim (int, optional): hidden-state width ``H``. (default: ``16``)
        input_shape (sequence of int, optional): per-sample input shape, e.g.
            ``(1, 28, 28)``.  Needed only when a Flatten follows a non-square
            feature map; otherwise a square map is inferred. (default: ``None``)
        hidden_init (str, optional): position code for ``hidden``, see
            :func:`~neuralgraph.positional.position_code`.
            (default: ``"sinusoidal"``)

    Returns:
        NeuralGraph: with ``num_edges == sum(p.numel() for p in model.parameters())``.

    Raises:
        UnsupportedModuleError: a layer has no graph form (path and type named).
        NeuralGraphError: tied parameters, NaN/inf weights, mixed dtypes.
        WeightShapeError: consecutive layers disagree on their sizes.
    """
    chain = extract_chain(model)
    ops = [op for op, _ in chain]
    params = _gather_params(chain, model)
    if not params:
        raise UnsupportedModuleError("", type(model).__qualname__, "model has no parameters")
    in_shape = tuple(int(s) for s in input_shape) if input_shape is not None else None
    shapes = _spatial_shapes(ops, in_shape)
    arch = Architecture(tuple(ops), in_shape, model.training, params[0].dtype)

    b = _Builder()
    cur: Optional[Tensor] = None  # node ids of the current neuron layer
    spatial = False  # current layer is a feature map (channels), not dense features
    known: Optional[Tuple[int, ...]] = None  # spatial size of the current map, if known
    flat: Optional[Tuple[int, Optional[Tuple[int, ...]], int]] = None  # (C, spatial, ndim) after Flatten
    ndim = 0
    layer = 0
    slots = iter(arch.param_slots)

    for i, op in enumerate(ops):
        k, where = op.kind, op.path or op.kind
        if k in ACTIVATIONS:
            if cur is not None:
                b.set_act(cur, ACTIVATIONS.index(k))
            continue
        if k == "Flatten":
            if op.get("start_dim") != 1 or op.get("end_dim") != -1:
                raise UnsupportedModuleError(op.path, "Flatten",
                                             "only Flatten(start_dim=1, end_dim=-1) is supported")
            if cur is not None and spatial:
                flat = (cur.numel(), known, ndim)
                spatial = False
            continue
        if k == "Dropout":
            continue
        if k.startswith(_SPATIAL_OPS):
            if cur is not None and not spatial:
                raise UnsupportedModuleError(op.path, k, "pooling needs a feature map, not dense features")
            if k.startswith("Adaptive"):
                size = op.get("output_size")
                size = (size,) * ndim if isinstance(size, int) else tuple(size)
                known = None if any(s is None for s in size) else size
            elif not k.startswith("Dropout"):
                known = None
            if shapes[i] is not None:
                known = shapes[i][1:]
            continue
        if not op.has_params:  # BatchNorm without affine
            continue

        # ---- parametrised layer ------------------------------------------------------
        if k == "Linear":
            n_in, n_out = op.get("in_features"), op.get("out_features")
            if cur is None:
                cur = b.add_nodes(n_in, 0, _ROLE_INPUT)
            elif spatial:
                raise UnsupportedModuleError(op.path, k, "Linear applied to a feature map without Flatten")
            w_slot = next(slots)
            idx = torch.arange(w_slot.numel)
            o, j = idx // n_in, idx % n_in
            if flat is not None:
                c_count, fknown, fnd = flat
                if n_in % c_count:
                    raise WeightShapeError(
                        f"layer {where!r}: in_features={n_in} is not a multiple of the "
                        f"{c_count} channels flattened before it")
                s_count = n_in // c_count
                width = _flat_width(s_count, fknown, fnd, where, c_count)
                c, s = j // s_count, j % s_count
                src, b_pos, krow, kcol = cur[c], c, s // width, s % width
            else:
                if n_in != cur.numel():
                    raise WeightShapeError(
                        f"layer {where!r}: in_features={n_in} but the previous layer has "
                        f"{cur.numel()} outputs")
                src, b_pos, krow, kcol = cur[j], j, 0, 0
            flat = None
            out, bias_node = _new_layer(b, op, layer, n_out)
            b.add_edges(src, out[o], layer, b_pos, o, krow, kcol, 0)
        elif k in ("Conv1d", "Conv2d"):
            n_in, n_out = op.get("in_channels"), op.get("out_channels")
            if cur is None:
                cur = b.add_nodes(n_in, 0, _ROLE_INPUT)
                spatial = True
                ndim = 1 if k == "Conv1d" else 2
                known = shapes[i - 1][1:] if i and shapes[i - 1] is not None else (
                    in_shape[1:] if in_shape is not None else None)
            elif not spatial:
                raise UnsupportedModuleError(op.path, k, "convolution applied to dense features")
            if n_in != cur.numel():
                raise WeightShapeError(f"layer {where!r}: in_channels={n_in} but the previous layer "
                                       f"has {cur.numel()} channels")
            ks = tuple(op.get("kernel_size"))
            kh, kw = (1, ks[0]) if len(ks) == 1 else ks
            w_slot = next(slots)
            idx = torch.arange(w_slot.numel)
            per_o = n_in * kh * kw
            o, rem = idx // per_o, idx % per_o
            c, kk = rem // (kh * kw), rem % (kh * kw)
            out, bias_node = _new_layer(b, op, layer, n_out)
            b.add_edges(cur[c], out[o], layer, c, o, kk // kw, kk % kw, 0)
            known = shapes[i][1:] if shapes[i] is not None else None
        else:  # BatchNorm1d / BatchNorm2d, affine
            n = op.get("num_features")
            if cur is None:
                cur = b.add_nodes(n, 0, _ROLE_INPUT)
                spatial = k == "BatchNorm2d"
                ndim = 2 if spatial else 0
            if n != cur.numel():
                raise WeightShapeError(f"layer {where!r}: num_features={n} but the previous layer "
                                       f"has {cur.numel()} outputs")
            if (k == "BatchNorm2d") != (spatial and ndim == 2):
                raise UnsupportedModuleError(op.path, k, "BatchNorm dimensionality does not match "
                                             "the preceding layer")
            w_slot = next(slots)
            c = torch.arange(n)
            out, bias_node = _new_layer(b, op, layer, n)
            b.add_edges(cur[c], out[c], layer, c, c, 0, 0, 0)
        if bias_node is not None:
            bias_slot = next(slots)
            o = torch.arange(bias_slot.numel)
            b.add_edges(bias_node.expand(o.numel()), out[o], layer, 0, o, 0, 0, 1)
        cur = out
        layer += 1

    roles = torch.cat(b.node_cols["role"])
    roles[cur] = _ROLE_OUTPUT
    edge_pos = torch.cat(b.pos)
    weight = torch.cat([p.detach().reshape(-1) for p in params]).clone()
    graph = NeuralGraph(
        edge_index=torch.stack([torch.cat(b.src), torch.cat(b.dst)]),
        weight=weight,
        hidden=position_code(edge_pos, hidden_dim, hidden_init, dtype=weight.dtype),
        edge_pos=edge_pos,
        edge_kind=torch.cat(b.kind),
        node_layer=torch.cat(b.node_cols["layer"]),
        node_pos=torch.cat(b.node_cols["pos"]),
        node_act=torch.cat(b.node_cols["act"]),
        node_role=roles,
        num_nodes=b.num_nodes,
        arch=arch,
    )
    if graph.num_edges != weight.numel():  # bookkeeping guard: never silently wrong
        raise NeuralGraphError(f"internal: {graph.num_edges} edges for {weight.numel()} parameters")
    return graph


def _new_layer(b: _Builder, op: Op, layer: int, n_out: int) -> Tuple[Tensor, Optional[Tensor]]:
    has_bias = op.kind.startswith("BatchNorm") or bool(op.get("bias"))
    bias_node = b.add_nodes(1, layer, _ROLE_BIAS) if has_bias else None
    out = b.add_nodes(n_out, layer + 1, _ROLE_HIDDEN)
    return out, bias_node


def _flat_width(s_count: int, known: Optional[Tuple[int, ...]], ndim: int, where: str, c: int) -> int:
    """Row width of the flattened feature map (``W`` of ``[C, H, W]``)."""
    if known is not None:
        prod = math.prod(known)
        if prod != s_count:
            raise WeightShapeError(
                f"layer {where!r}: expects {c * s_count} inputs but the flattened map is "
                f"{c} x {'x'.join(map(str, known))} = {c * prod}")
        return known[-1]
    if ndim == 1:
        return s_count
    side = math.isqrt(s_count)
    if side * side != s_count:
        raise WeightShapeError(
            f"layer {where!r}: cannot tell the height/width of the flattened {c}-channel map "
            f"({s_count} positions is not a square); pass input_shape=(C, H, W)")
    return side


def load_weight(module: nn.Module, arch: Architecture, weight: Tensor) -> nn.Module:
    """Copy a flat weight vector into ``module`` (built by ``arch.build()``), checked."""
    if weight.dim() != 1 or weight.numel() != arch.num_params:
        raise WeightShapeError(
            f"weight vector must have shape ({arch.num_params},), got {tuple(weight.shape)}")
    with torch.no_grad():
        for s in arch.param_slots:
            p = module.get_parameter(s.name)
            if tuple(p.shape) != s.shape:
                raise WeightShapeError(f"parameter {s.name!r} has shape {tuple(p.shape)}, "
                                       f"expected {s.shape}")
            chunk = weight.narrow(0, s.offset, s.numel)
            if not torch.isfinite(chunk).all():
                layer = arch.ops[s.op_index]
                raise NeuralGraphError(
                    f"weights of layer {layer.path or s.name!r} ({layer.kind}) contain NaN/inf")
            p.copy_(chunk.view(s.shape))
    return module


def to_module(graph: NeuralGraph) -> nn.Sequential:
    """Build a runnable ``nn.Sequential`` with exactly the graph's function.

    No template model is needed: layer types, sizes, strides, paddings,
    activations and BatchNorm statistics come from ``graph.arch``; parameters
    from ``graph.weight``.
    """
    arch = graph._single_arch("to_module")
    module = arch.build().to(graph.weight.device)
    return load_weight(module, arch, graph.weight.detach())
