r"""Architecture specs: the template-free description a neural graph carries.

A model is reduced to a flat chain of :class:`Op` records, one per layer, each
naming a ``torch.nn`` class and the exact constructor arguments needed to
rebuild it.  Parameters never live here (they are the graph's edges); buffers
(BatchNorm running statistics) do, since they are not parameters.

Models that are not an ``nn.Sequential`` are traced with :mod:`torch.fx`; a
traced graph must be a single chain (no residual branches), and functional calls
(``F.relu``, ``torch.flatten``, ``x.view(x.size(0), -1)`` ...) are mapped onto
their ``nn`` module equivalents, so the rebuilt model is always a plain
``nn.Sequential``.
"""

from __future__ import annotations

import inspect
import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neuralgraph.errors import UnsupportedModuleError

__all__ = [
    "Op",
    "Architecture",
    "ParamSlot",
    "extract_ops",
    "extract_chain",
    "ACTIVATIONS",
    "PARAM_MODULES",
    "FREE_MODULES",
]

#: Node activation codes (``NeuralGraph.node_act``).
ACTIVATIONS: Tuple[str, ...] = (
    "Identity", "ReLU", "Tanh", "Sigmoid", "GELU", "ELU", "LeakyReLU", "Softmax",
    "LogSoftmax", "SiLU",
)

#: Modules whose parameters become edges, by class name.
PARAM_MODULES: Tuple[str, ...] = (
    "Linear", "Conv1d", "Conv2d", "BatchNorm1d", "BatchNorm2d",
)

#: Parameter-free modules that a graph records as operations between layers.
FREE_MODULES: Tuple[str, ...] = ACTIVATIONS + (
    "Flatten", "Dropout", "Dropout1d", "Dropout2d",
    "MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d",
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d",
)

_SKIP_ARGS = {"self", "device", "dtype"}


@dataclass(frozen=True, eq=False)
class Op:
    """One layer of a chain: ``getattr(torch.nn, kind)(**kwargs)``.

    Args:
        kind (str): ``torch.nn`` class name, e.g. ``"Conv2d"``.
        kwargs (tuple): constructor arguments as ``(name, value)`` pairs.
        buffers (tuple): ``(name, tensor)`` pairs (BatchNorm running stats).
        path (str): where the layer sat in the source model (for messages).
    """

    kind: str
    kwargs: Tuple[Tuple[str, Any], ...]
    buffers: Tuple[Tuple[str, Tensor], ...] = ()
    path: str = ""

    @property
    def has_params(self) -> bool:
        if self.kind not in PARAM_MODULES:
            return False
        kw = dict(self.kwargs)
        return kw.get("affine", True) is not False

    def get(self, name: str, default: Any = None) -> Any:
        return dict(self.kwargs).get(name, default)

    def build(self) -> nn.Module:
        """A fresh ``nn.Module`` for this op (parameters uninitialised)."""
        cls = getattr(nn, self.kind)
        return cls(**dict(self.kwargs))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs)
        return f"{self.kind}({args})"


@dataclass(frozen=True)
class ParamSlot:
    """Where one parameter tensor lives in the flat edge-weight vector."""

    name: str  # parameter name inside the rebuilt nn.Sequential, e.g. "0.weight"
    op_index: int
    shape: Tuple[int, ...]
    offset: int
    numel: int


@dataclass(eq=False)
class Architecture:
    """A chain of :class:`Op` plus everything needed to rebuild and run it.

    Args:
        ops (tuple of Op): the layers, in order.
        input_shape (tuple, optional): per-sample input shape, if known.
        training (bool): the source model's train/eval flag.
        dtype (torch.dtype): parameter dtype.
    """

    ops: Tuple[Op, ...]
    input_shape: Optional[Tuple[int, ...]] = None
    training: bool = False
    dtype: torch.dtype = torch.float32
    _template: Optional[nn.Module] = field(default=None, repr=False, compare=False)

    @property
    def param_slots(self) -> List[ParamSlot]:
        """Parameter layout in memory order (the edge order of the graph)."""
        slots: List[ParamSlot] = []
        offset = 0
        for i, op in enumerate(self.ops):
            for name, shape in _param_shapes(op):
                n = 1
                for s in shape:
                    n *= s
                slots.append(ParamSlot(f"{i}.{name}", i, shape, offset, n))
                offset += n
        return slots

    @property
    def num_params(self) -> int:
        slots = self.param_slots
        return slots[-1].offset + slots[-1].numel if slots else 0

    def build(self) -> nn.Sequential:
        """A fresh ``nn.Sequential`` with this architecture (random parameters)."""
        seq = nn.Sequential(*[op.build() for op in self.ops]).to(self.dtype)
        for i, op in enumerate(self.ops):
            for name, buf in op.buffers:
                getattr(seq[i], name).copy_(buf)
        return seq.train(self.training)

    @property
    def template(self) -> nn.Module:
        """A cached module used by the functional forward (parameters unused)."""
        if self._template is None:
            self._template = self.build()
        return self._template

    def buffers(self, device: Optional[torch.device] = None) -> Dict[str, Tensor]:
        return {f"{i}.{n}": b.to(device) if device is not None else b
                for i, op in enumerate(self.ops) for n, b in op.buffers}

    def __repr__(self) -> str:
        body = ", ".join(repr(op) for op in self.ops)
        return f"Architecture([{body}], input_shape={self.input_shape})"

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state["_template"] = None
        return state


def _param_shapes(op: Op) -> List[Tuple[str, Tuple[int, ...]]]:
    k = op.kind
    if k == "Linear":
        out = [("weight", (op.get("out_features"), op.get("in_features")))]
        if op.get("bias"):
            out.append(("bias", (op.get("out_features"),)))
        return out
    if k in ("Conv1d", "Conv2d"):
        ks = tuple(op.get("kernel_size"))
        out = [("weight", (op.get("out_channels"), op.get("in_channels")) + ks)]
        if op.get("bias"):
            out.append(("bias", (op.get("out_channels"),)))
        return out
    if k in ("BatchNorm1d", "BatchNorm2d") and op.get("affine"):
        n = op.get("num_features")
        return [("weight", (n,)), ("bias", (n,))]
    return []


# --------------------------------------------------------------------------------------
# Extraction from modules
# --------------------------------------------------------------------------------------

def _module_op(module: nn.Module, path: str) -> Op:
    kind = type(module).__name__
    if type(module) is not getattr(nn, kind, None) or kind not in PARAM_MODULES + FREE_MODULES:
        raise UnsupportedModuleError(
            path, type(module).__qualname__,
            "supported modules are " + ", ".join(PARAM_MODULES + FREE_MODULES))
    kwargs: List[Tuple[str, Any]] = []
    sig = inspect.signature(type(module).__init__)
    for name, p in sig.parameters.items():
        if name in _SKIP_ARGS or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if name == "bias":
            value: Any = getattr(module, "bias", None) is not None
        else:
            value = getattr(module, name)
        kwargs.append((name, value))
    kw = dict(kwargs)
    if kind.startswith("Conv"):
        if kw["groups"] != 1:
            raise UnsupportedModuleError(path, kind, f"groups={kw['groups']} (only groups=1)")
        if kw["padding_mode"] != "zeros":
            raise UnsupportedModuleError(path, kind, f"padding_mode={kw['padding_mode']!r}")
    if kind.startswith(("MaxPool", "AdaptiveMaxPool")) and kw.get("return_indices"):
        raise UnsupportedModuleError(path, kind, "return_indices=True")
    buffers: Tuple[Tuple[str, Tensor], ...] = ()
    if kind.startswith("BatchNorm"):
        buffers = tuple((n, b.detach().clone()) for n, b in module.named_buffers(recurse=False)
                        if b is not None)
    return Op(kind, tuple(kwargs), buffers, path)


def _flatten_sequential(seq: nn.Sequential, prefix: str) -> List[Tuple[str, nn.Module]]:
    out: List[Tuple[str, nn.Module]] = []
    for name, child in seq._modules.items():  # not named_children(): it hides repeats
        if child is None:
            continue
        path = f"{prefix}.{name}" if prefix else name
        if type(child) is nn.Sequential:
            out.extend(_flatten_sequential(child, path))
        else:
            out.append((path, child))
    return out


_FUNCTIONS: Dict[Any, Callable[[Tuple[Any, ...], Dict[str, Any]], Tuple[str, Dict[str, Any]]]] = {}


def _fn(*targets: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(f: Callable[..., Any]) -> Callable[..., Any]:
        for t in targets:
            _FUNCTIONS[t] = f
        return f
    return deco


def _arg(args: Tuple[Any, ...], kwargs: Dict[str, Any], i: int, name: str, default: Any) -> Any:
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


@_fn(F.relu, torch.relu, "relu")
def _relu(a: Any, k: Any) -> Any:
    return "ReLU", {}


@_fn(torch.tanh, F.tanh, "tanh")
def _tanh(a: Any, k: Any) -> Any:
    return "Tanh", {}


@_fn(torch.sigmoid, F.sigmoid, "sigmoid")
def _sigmoid(a: Any, k: Any) -> Any:
    return "Sigmoid", {}


@_fn(F.gelu)
def _gelu(a: Any, k: Any) -> Any:
    return "GELU", {"approximate": k.get("approximate", "none")}


@_fn(F.silu)
def _silu(a: Any, k: Any) -> Any:
    return "SiLU", {}


@_fn(F.elu)
def _elu(a: Any, k: Any) -> Any:
    return "ELU", {"alpha": _arg(a, k, 1, "alpha", 1.0)}


@_fn(F.leaky_relu)
def _leaky(a: Any, k: Any) -> Any:
    return "LeakyReLU", {"negative_slope": _arg(a, k, 1, "negative_slope", 0.01)}


@_fn(F.softmax, torch.softmax, "softmax")
def _softmax(a: Any, k: Any) -> Any:
    return "Softmax", {"dim": _arg(a, k, 1, "dim", None)}


@_fn(F.log_softmax, torch.log_softmax, "log_softmax")
def _log_softmax(a: Any, k: Any) -> Any:
    return "LogSoftmax", {"dim": _arg(a, k, 1, "dim", None)}


@_fn(torch.flatten, "flatten")
def _flatten(a: Any, k: Any) -> Any:
    return "Flatten", {"start_dim": _arg(a, k, 1, "start_dim", 0), "end_dim": _arg(a, k, 2, "end_dim", -1)}


@_fn(F.dropout)
def _dropout(a: Any, k: Any) -> Any:
    return "Dropout", {"p": _arg(a, k, 1, "p", 0.5)}


@_fn(F.max_pool2d, F.max_pool1d)
def _maxpool(a: Any, k: Any) -> Any:
    return "MaxPool", {"kernel_size": _arg(a, k, 1, "kernel_size", None),
                       "stride": _arg(a, k, 2, "stride", None),
                       "padding": _arg(a, k, 3, "padding", 0),
                       "dilation": _arg(a, k, 4, "dilation", 1),
                       "ceil_mode": _arg(a, k, 5, "ceil_mode", False)}


@_fn(F.avg_pool2d, F.avg_pool1d)
def _avgpool(a: Any, k: Any) -> Any:
    return "AvgPool", {"kernel_size": _arg(a, k, 1, "kernel_size", None),
                       "stride": _arg(a, k, 2, "stride", None),
                       "padding": _arg(a, k, 3, "padding", 0),
                       "ceil_mode": _arg(a, k, 4, "ceil_mode", False),
                       "count_include_pad": _arg(a, k, 5, "count_include_pad", True)}


@_fn(F.adaptive_avg_pool2d, F.adaptive_avg_pool1d)
def _adaptive(a: Any, k: Any) -> Any:
    return "AdaptiveAvgPool", {"output_size": _arg(a, k, 1, "output_size", None)}


def _ops_from_fx(model: nn.Module) -> List[Tuple[Op, Optional[nn.Module]]]:
    import torch.fx as fx

    try:
        traced = fx.symbolic_trace(model)
    except Exception as exc:  # noqa: BLE001 - fx raises many kinds
        raise UnsupportedModuleError(
            "", type(model).__qualname__,
            f"not an nn.Sequential and torch.fx could not trace it ({type(exc).__name__}: {exc})"
        ) from exc
    ops: List[Tuple[Op, Optional[nn.Module]]] = []
    current: Optional[fx.Node] = None
    for node in traced.graph.nodes:
        where = f"fx node {node.name!r}"
        if node.op == "placeholder":
            if current is not None:
                raise UnsupportedModuleError("", type(model).__qualname__,
                                             "forward() must take exactly one input tensor")
            current = node
            continue
        if node.op == "output":
            if node.args[0] is not current:
                raise UnsupportedModuleError("", type(model).__qualname__,
                                             "forward() must return the chain's last tensor")
            continue
        if node.op == "get_attr":
            raise UnsupportedModuleError(
                str(node.target), "parameter/buffer used directly in forward()",
                "custom modules with their own parameters are not supported")
        # side computations feeding a view: x.size(0) / x.shape[0]
        if _is_shape_query(node):
            continue
        first = node.args[0] if node.args else None
        if first is not current:
            raise UnsupportedModuleError(
                str(node.target) if node.op == "call_module" else where, str(node.target),
                "the model is not a single chain of layers (residual or branching connection); "
                "only feed-forward chains are supported")
        if node.op == "call_module":
            sub = traced.get_submodule(str(node.target))
            if any(u is not current for u in node.all_input_nodes):
                raise UnsupportedModuleError(str(node.target), type(sub).__qualname__,
                                             "module takes more than the chain's tensor")
            ops.append((_module_op(sub, str(node.target)), sub))
        else:
            ops.append((_function_op(node, traced), None))
        current = node
    return ops


def _is_shape_query(node: Any) -> bool:
    """``x.size(0)``, ``x.shape`` or ``x.shape[0]``: side values feeding a view."""
    if node.op == "call_method" and node.target == "size":
        return True
    if node.op == "call_function" and node.target is getattr:
        return len(node.args) > 1 and node.args[1] == "shape"
    if node.op == "call_function" and node.target is operator.getitem:
        src = node.args[0]
        return hasattr(src, "op") and _is_shape_query(src)
    return False


def _function_op(node: Any, traced: Any) -> Op:
    target = node.target
    args, kwargs = tuple(node.args), dict(node.kwargs)
    key: Any = target if node.op == "call_function" else str(target)
    if node.op == "call_method" and key in ("view", "reshape"):
        rest = args[1:]
        if len(rest) == 2 and rest[1] == -1 and getattr(rest[0], "op", None) in (
                "call_method", "call_function"):
            return Op("Flatten", (("start_dim", 1), ("end_dim", -1)), (), node.name)
        raise UnsupportedModuleError(node.name, f"Tensor.{key}",
                                     "only x.view(x.size(0), -1) style flattening is supported")
    if node.op == "call_method" and key == "flatten":
        kind, kw = _flatten(args, kwargs)
        return Op(kind, tuple(kw.items()), (), node.name)
    fn = _FUNCTIONS.get(key)
    if fn is None:
        name = getattr(target, "__name__", str(target))
        raise UnsupportedModuleError(node.name, f"{node.op} {name}", "unsupported operation")
    kind, kw = fn(args, kwargs)
    if kind in ("MaxPool", "AvgPool", "AdaptiveAvgPool"):
        dims = "1d" if target in (F.max_pool1d, F.avg_pool1d, F.adaptive_avg_pool1d) else "2d"
        kind = kind + dims
        if kind.startswith("MaxPool") and kw["stride"] is None:
            kw["stride"] = kw["kernel_size"]
        if kind.startswith("AvgPool") and kw["stride"] is None:
            kw["stride"] = kw["kernel_size"]
        if kind.startswith("MaxPool"):
            kw = {"kernel_size": kw["kernel_size"], "stride": kw["stride"],
                  "padding": kw["padding"], "dilation": kw["dilation"], "ceil_mode": kw["ceil_mode"]}
    return Op(kind, tuple(kw.items()), (), node.name)


def extract_chain(model: nn.Module) -> List[Tuple[Op, Optional[nn.Module]]]:
    """The chain of ``(Op, source module or None)`` that computes ``model``.

    Raises:
        UnsupportedModuleError: a layer (named by its path) has no graph form.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(model).__qualname__}")
    if type(model) is nn.Sequential:
        return [(_module_op(m, p), m) for p, m in _flatten_sequential(model, "")]
    kind = type(model).__name__
    if type(model) is getattr(nn, kind, None):
        # a bare torch.nn layer (nn.Linear(3, 4)) or an unsupported one (nn.LSTM)
        return [(_module_op(model, ""), model)]
    return _ops_from_fx(model)


def extract_ops(model: nn.Module) -> List[Op]:
    """The chain of :class:`Op` that computes ``model`` (see :func:`extract_chain`)."""
    return [op for op, _ in extract_chain(model)]
