r"""The local-rule interface, the rule registry and the stochastic update step.

A *rule* is an ``nn.Module`` that reads a :class:`~neuralgraph.NeuralGraph` (or a
PyG ``Batch`` of them) and returns per-edge updates ``(dw [E], dh [E, H])``:

.. code-block:: python

    class MyRule(Rule):
        def forward(self, graph, x=None):
            nbr = neighbourhoods(graph)
            ...
            return dw, dh

:func:`step` applies one stochastic update (each edge fires with probability
``fire_rate``) and returns a *new* graph sharing structure with the old one, so
unrolling many steps is differentiable end to end.
"""

from __future__ import annotations

import copy
import importlib
from typing import Callable, Dict, Optional, Type, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neuralgraph.neighbourhood import Neighbourhoods
from neuralgraph.typing import RuleOutput

__all__ = ["Rule", "register", "get", "available", "step", "neighbourhoods", "check_hidden", "edge_state",
           "init_update_layer"]

_REGISTRY: Dict[str, Type[nn.Module]] = {}


class Rule(nn.Module):
    """Base class of local rules.

    Subclasses implement ``forward(graph, x=None) -> (dw, dh)`` where ``x`` is an
    optional data batch for data-conditioned rules.

    Args:
        hidden_dim (int): width ``H`` of the edges' hidden states.
    """

    def __init__(self, hidden_dim: int) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim

    def check_graph(self, graph: object) -> None:
        check_hidden(graph, self.hidden_dim, self.__class__.__name__)

    def forward(self, graph: object, x: Optional[Tensor] = None) -> RuleOutput:  # pragma: no cover
        raise NotImplementedError


def check_hidden(graph: object, hidden_dim: int, owner: str) -> None:
    """Raise a clear error unless ``graph`` has weights ``[E]`` and hidden states ``[E, hidden_dim]``."""
    weight = getattr(graph, "weight", None)
    hidden = getattr(graph, "hidden", None)
    if weight is None or weight.dim() != 1:
        raise ValueError(f"{owner} expects graph.weight of shape [E], got "
                         f"{None if weight is None else tuple(weight.shape)}")
    if hidden is None or hidden.dim() != 2 or hidden.size(1) != hidden_dim \
            or hidden.size(0) != weight.size(0):
        raise ValueError(
            f"{owner} expects hidden states [{weight.size(0)}, {hidden_dim}], got "
            f"{None if hidden is None else tuple(hidden.shape)}; build the graph with "
            f"to_neural_graph(model, hidden_dim={hidden_dim})")


def neighbour_weight(graph: object, owner: str) -> Optional[Tensor]:
    """The graph's optional ``neighbour_weight`` ``[E, 2]`` (``None`` when it has none).

    Column 0 weighs an edge in the forward neighbourhoods it belongs to (the sums over the edges
    leaving its source neuron), column 1 in the backward ones (the sums over the edges entering its
    target neuron).  Rules then aggregate weighted means (:class:`~neuralgraph.rules.MLPRule`) and
    weighted linear-attention sums (:class:`~neuralgraph.rules.WeightTransformer`); all ones is the
    plain aggregation, and 0 leaves an edge out of the sums (a neighbourhood whose weights are all 0
    aggregates to zero, as an empty one).  :class:`~neuralgraph.meta.GraphFactory` sets it on
    ``code_tile`` graphs, where ``1 / copies`` makes every neighbourhood sum the reference network's
    and 0 marks the taps of a larger kernel that the reference does not have.  To batch graphs of which
    only some carry it, use :func:`neuralgraph.batch_graphs` (PyG's ``Batch.from_data_list`` keeps the
    first graph's attributes only).

    Raises:
        ValueError: it is not a finite, non-negative ``[E, 2]`` tensor of the weights' dtype (``owner``
            names the rule in the message).
    """
    nw = getattr(graph, "neighbour_weight", None)
    if nw is None:
        return None
    weight = graph.weight  # type: ignore[attr-defined]
    if not isinstance(nw, Tensor) or nw.shape != (weight.numel(), 2) or nw.dtype != weight.dtype:
        raise ValueError(f"{owner}: graph.neighbour_weight must be a {weight.dtype} tensor of shape "
                         f"[{weight.numel()}, 2], got "
                         f"{tuple(nw.shape) if isinstance(nw, Tensor) else type(nw).__name__}"
                         f"{'' if not isinstance(nw, Tensor) else ' ' + str(nw.dtype)}")
    if nw.numel() and not bool(((nw >= 0) & torch.isfinite(nw)).all()):
        raise ValueError(f"{owner}: graph.neighbour_weight must be finite and non-negative")
    return nw


def edge_state(graph: object, edges: slice = slice(None)) -> Tensor:
    """Per-edge state ``[w, h]`` of the edges in ``edges``: ``[n, 1 + H]``."""
    w, h = graph.weight[edges], graph.hidden[edges]  # type: ignore[attr-defined]
    return torch.cat([w.unsqueeze(-1), h], dim=-1)


class _TallLinear(torch.autograd.Function):
    """``x W^T + b`` for tall ``x [n, k]`` (many edges, few features), whose backward forms the
    weight gradient with the wider of ``x`` and the output gradient as the right operand:
    torch's ``g^T x`` for a narrow ``x`` (``k = 1 + H = 11``, say) runs several times below
    the matrix-product rate on CPU."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        gx = g @ weight if ctx.needs_input_grad[0] else None
        gw = None
        if ctx.needs_input_grad[1]:
            gw = g.t() @ x if x.size(1) >= g.size(1) else (x.t() @ g).t()
        gb = g.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb


def tall_linear(x: Tensor, layer: nn.Linear) -> Tensor:
    """``layer(x)`` for ``x [n, k]`` with many rows (see :class:`_TallLinear`); the same values
    and gradients as ``layer(x)``, faster backward on CPU when ``k`` is small."""
    if torch.is_grad_enabled() and x.dim() == 2:
        return _TallLinear.apply(x, layer.weight, layer.bias)
    return layer(x)


def init_update_layer(layer: nn.Linear, zero_init: bool) -> None:
    """Initialise a rule's last layer: zeros (the rule starts as the identity update) or small
    random weights (std ``0.01``); the bias is always zero."""
    if zero_init:
        nn.init.zeros_(layer.weight)
    else:
        nn.init.normal_(layer.weight, std=0.01)
    nn.init.zeros_(layer.bias)


def probe_batch(graph: object, x: Optional[Tensor], owner: str
                ) -> "tuple[Tensor, Optional[Tensor], Optional[Tensor]]":
    """The data batch a data-conditioned rule reads: ``(x, network weight or None, labels or None)``.

    With ``x`` given it is used as is (the network weight is ``graph.weight``).  Without it,
    the graph's probe batch set by :meth:`~neuralgraph.meta.GraphFactory.set_data` is used,
    with the weight the network really computes with (after fan-in scaling /
    standardisation) and the probe's labels.

    Raises:
        ValueError: neither ``x`` nor a probe batch is there (the message names ``owner``).
    """
    if x is not None:
        return x, None, None
    probe = graph.__dict__.get("data_probe")  # set by GraphFactory.set_data
    if probe is None:
        raise ValueError(f"data-conditioned {owner} needs a data batch x (or a probe batch on the graph: "
                         f"GraphFactory.set_data)")
    probe_x, net_weight, probe_y = probe
    return probe_x, net_weight(graph.weight), probe_y  # type: ignore[attr-defined]


def neighbourhoods(graph: object) -> Neighbourhoods:
    """The graph's :class:`Neighbourhoods`, cached on the graph object.

    The cache is keyed on the ``edge_index`` tensor itself, so it survives the
    shallow copies made by :func:`step` and is rebuilt if ``edge_index`` is
    replaced.
    """
    edge_index = graph.edge_index  # type: ignore[attr-defined]
    cached = graph.__dict__.get("_nbr_cache")
    if cached is not None and cached[0] is edge_index:
        return cached[1]
    nbr = Neighbourhoods(edge_index, graph.num_nodes)  # type: ignore[attr-defined]
    graph.__dict__["_nbr_cache"] = (edge_index, nbr)
    return nbr


def register(name: str) -> Callable[[Type[nn.Module]], Type[nn.Module]]:
    """Class decorator: make a rule available as ``rules.get(name)``."""

    def deco(cls: Type[nn.Module]) -> Type[nn.Module]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"rule name {name!r} is already registered to {_REGISTRY[name]}")
        _REGISTRY[name] = cls
        return cls

    return deco


def available() -> list:
    """Names of the registered rules."""
    return sorted(_REGISTRY)


def get(name: Union[str, Type[nn.Module]]) -> Type[nn.Module]:
    """Look a rule class up by registered name or by import path ``"pkg.mod:Class"``."""
    if isinstance(name, type):
        return name
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name:
        mod_name, _, attr = name.partition(":")
        try:
            module = importlib.import_module(mod_name)
        except ImportError as exc:
            raise ValueError(f"cannot import rule module {mod_name!r} from {name!r}: {exc}") from exc
        try:
            cls = getattr(module, attr)
        except AttributeError as exc:
            raise ValueError(f"module {mod_name!r} has no rule {attr!r}") from exc
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise ValueError(f"{name!r} is not an nn.Module class")
        return cls
    raise ValueError(f"unknown rule {name!r}; registered: {available()}, or use 'package.module:Class'")


def step(graph: object, rule: nn.Module, fire_rate: float = 0.8,
         generator: Optional[torch.Generator] = None, x: Optional[Tensor] = None,
         update: Optional[RuleOutput] = None) -> object:
    r"""One stochastic rule update.

    .. math::
        m_e \sim \mathrm{Bernoulli}(p), \quad
        w_e \leftarrow w_e + m_e\,\Delta w_e, \quad
        h_e \leftarrow h_e + m_e\,\Delta h_e

    Args:
        graph: a :class:`~neuralgraph.NeuralGraph` or ``Batch``.
        rule (nn.Module): returns ``(dw [E], dh [E, H])``.
        fire_rate (float, optional): probability :math:`p` that an edge is
            updated. (default: ``0.8``)
        generator (torch.Generator, optional): RNG for the fire mask.
        x (Tensor, optional): data batch passed to data-conditioned rules.
        update (tuple, optional): precomputed ``(dw, dh)`` (skips the rule).

    Returns:
        a shallow copy of ``graph`` with new ``weight`` and ``hidden`` tensors
        (no in-place edits, so autograd through many steps works).
    """
    if not 0.0 <= fire_rate <= 1.0:
        raise ValueError(f"fire_rate must lie in [0, 1], got {fire_rate}")
    if update is None:
        update = rule(graph, x) if x is not None else rule(graph)
    dw, dh = update
    weight, hidden = graph.weight, graph.hidden  # type: ignore[attr-defined]
    if dw.shape != weight.shape or dh.shape != hidden.shape:
        raise ValueError(f"rule returned dw {tuple(dw.shape)}, dh {tuple(dh.shape)} for weight "
                         f"{tuple(weight.shape)}, hidden {tuple(hidden.shape)}")
    if fire_rate < 1.0:
        u = torch.rand(weight.shape, generator=generator, device=generator.device
                       if generator is not None else weight.device).to(weight.device)
        mask = (u < fire_rate).to(weight.dtype)
        dw = dw * mask
        dh = dh * mask.unsqueeze(-1)
    out = copy.copy(graph)
    out.weight = weight + dw
    out.hidden = hidden + dh
    return out
