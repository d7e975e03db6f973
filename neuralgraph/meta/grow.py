r"""Growing networks with a rule: initial states, differentiable unrolls, accuracy.

A *state* is the pair ``(weight [E], hidden [E, H])``; the graph structure
(``edge_index``, positions, architecture) lives in a template
:class:`~neuralgraph.NeuralGraph` built once per architecture.
"""

from __future__ import annotations

import copy
import functools
import math
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from neuralgraph.architecture import ACTIVATIONS, Architecture, ParamSlot
from neuralgraph.convert import to_neural_graph
from neuralgraph.datasets.architectures import arch_name, build_arch
from neuralgraph.graph import NODE_ROLES, NeuralGraph
from neuralgraph.meta.config import CHECKPOINT_MODES
from neuralgraph.positional import position_code
from neuralgraph.rules.base import step

__all__ = ["State", "GraphFactory", "CHECKPOINT_MODES", "unroll", "logits", "accuracy", "grow_trajectory",
           "hidden_layers"]

State = Tuple[Tensor, Tensor]


#: Added to centred kernel offsets (``GraphFactory(kernel_offsets=True)``): the code of the tap aligned
#: with the output pixel; paddings up to this value are supported.
KERNEL_CENTRE = 8


def _conv_padding(op) -> Tuple[int, int]:
    """A conv op's ``(rows, cols)`` padding as integers (``"valid"``/``"same"`` resolved, stride 1)."""
    pad = op.get("padding", 0)
    if isinstance(pad, str):  # "valid" or "same" (stride 1: left padding (k - 1) // 2)
        k = op.get("kernel_size")
        k = [k, k] if isinstance(k, int) else list(k)
        pad = [0] * len(k) if pad == "valid" else [(x - 1) // 2 for x in k]
    pad = [pad, pad] if isinstance(pad, int) else list(pad) + [0] * (2 - len(pad))
    return int(pad[0]), int(pad[1])


def conv_weight_slots(graph: NeuralGraph, caller: str = "conv_weight_slots") -> list:
    """The ``ParamSlot`` of every conv layer's weight, in network order.  ``caller`` names
    the feature in the error raised for a graph without an :class:`Architecture`."""
    arch = getattr(graph, "arch", None)
    if not isinstance(arch, Architecture):
        raise ValueError(f"{caller} needs a graph with an Architecture (graph.arch)")
    return [s for s in arch.param_slots
            if arch.ops[s.op_index].kind.startswith("Conv") and s.name.endswith("weight")]


def _centre_kernel_positions(graph: NeuralGraph, pos: Tensor) -> None:
    """Replace conv weights' kernel row/column in ``pos [E, 5]`` by ``index - padding + KERNEL_CENTRE``."""
    for slot in conv_weight_slots(graph, "kernel_offsets"):
        op = graph.arch.ops[slot.op_index]
        pad = _conv_padding(op)
        if max(pad) > KERNEL_CENTRE:
            raise ValueError(f"kernel_offsets: padding {pad} of layer {op!r} exceeds {KERNEL_CENTRE}")
        rows = slice(slot.offset, slot.offset + slot.numel)
        pos[rows, 3] += KERNEL_CENTRE - pad[0]
        if len(slot.shape) > 3:  # Conv2d: [O, C, kh, kw]
            pos[rows, 4] += KERNEL_CENTRE - pad[1]


def _tap_starts(small_shape: Tuple[int, ...], small_pad: Tuple[int, int], host_shape: Tuple[int, ...],
                host_pad: Tuple[int, int]) -> Optional[List[int]]:
    """Per kernel axis, the host tap index of the small kernel's tap 0 when both read the same offsets from
    the output pixel (``index - padding``), or ``None`` if the small kernel does not fit inside the host's."""
    starts = [host_pad[i] - small_pad[i] for i in range(len(small_shape) - 2)]
    fits = all(0 <= st and st + small_shape[2 + i] <= host_shape[2 + i] for i, st in enumerate(starts))
    return starts if fits else None


def embed_conv_layer(small: NeuralGraph, small_weight: Tensor, host: NeuralGraph, host_weight: Tensor,
                     layer: int) -> Tensor:
    """``host_weight`` with conv layer ``layer`` replaced by the small network's kernels.

    Both are *network* weight vectors (``[E_small]``, ``[E_host]``) of two CNNs
    that differ only in kernel size.  Each small tap goes to the host tap at the
    same offset from the output pixel (``index - padding``); the other host taps
    are zero.  The embedded kernels are scaled by ``sqrt(host taps / small taps)``
    so a standardised layer keeps its output scale.  With equal output sizes
    the host layer then computes exactly what the small layer computes; it is
    the building block of the kernel-consistency loss (``train.kernel_consistency``):
    a layer grown for one kernel size must work inside the network grown for
    another.  Differentiable in both weight vectors.

    Raises:
        ValueError: if the layer's channels differ or a small tap falls outside
            the host kernel.
    """
    s_slots, h_slots = conv_weight_slots(small), conv_weight_slots(host)
    if not 0 <= layer < min(len(s_slots), len(h_slots)):
        raise ValueError(f"conv layer {layer} out of range ({len(s_slots)} / {len(h_slots)} conv layers)")
    ss, hs = s_slots[layer], h_slots[layer]
    if ss.shape[:2] != hs.shape[:2] or len(ss.shape) != len(hs.shape):
        raise ValueError(f"conv layer {layer}: small weight {tuple(ss.shape)} and host weight {tuple(hs.shape)} "
                         "differ in channels or dimensions")
    sp = _conv_padding(small.arch.ops[ss.op_index])
    hp = _conv_padding(host.arch.ops[hs.op_index])
    starts = _tap_starts(ss.shape, sp, hs.shape, hp)
    if starts is None:
        raise ValueError(f"conv layer {layer}: small kernel {tuple(ss.shape[2:])} (padding {sp}) does not fit "
                         f"inside host kernel {tuple(hs.shape[2:])} (padding {hp}) at equal offsets")
    w_small = small_weight[ss.offset:ss.offset + ss.numel].view(ss.shape)
    scale = math.sqrt(math.prod(hs.shape[2:]) / math.prod(ss.shape[2:]))
    block = w_small.new_zeros(hs.shape)
    idx = (slice(None), slice(None)) + tuple(slice(st, st + n) for st, n in zip(starts, ss.shape[2:]))
    block[idx] = w_small * scale
    return torch.cat([host_weight[:hs.offset], block.reshape(-1), host_weight[hs.offset + hs.numel:]])


_EMBEDDABLE = ("Conv2d", "Linear", "Flatten", "MaxPool2d", "Dropout", "Dropout2d")


def _conv_input_sizes(model: nn.Module, input_shape: Sequence[int]) -> List[Tuple[int, ...]]:
    """The spatial size of the input of every ``Conv2d`` of ``model`` on one ``input_shape`` sample."""
    sizes: List[Tuple[int, ...]] = []
    hooks = [m.register_forward_pre_hook(lambda _m, a: sizes.append(tuple(a[0].shape[2:])))
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
    return sizes


def _flat_slot(graph: NeuralGraph) -> Optional[ParamSlot]:
    """The weight ``ParamSlot`` of the first ``Linear`` after a ``Flatten`` (``None`` if there is none)."""
    ops = graph.arch.ops
    flat = [i for i, op in enumerate(ops) if op.kind == "Flatten"]
    for s in graph.arch.param_slots:
        if flat and s.op_index > flat[0] and ops[s.op_index].kind == "Linear" and s.name.endswith("weight"):
            return s
    return None


def _kernel_map(graph: NeuralGraph, ref: NeuralGraph, sizes: Callable[[], List[Tuple[int, ...]]],
                ref_sizes: List[Tuple[int, ...]], spec: str, ref_spec: str) -> Optional[Tuple[Tensor, Tensor]]:
    """Embed a CNN reference with smaller kernels: ``(edge_pos [E, 5], keep [E] bool)``, or ``None`` when
    the kernels are equal.

    Each reference tap goes to the graph's tap at the same offset from the output pixel (``index -
    padding``, as in :func:`embed_conv_layer`), whose ``edge_pos`` kernel row / column become the reference
    tap's indices; the other taps are not kept.  Of the dense layer after ``Flatten``, the edges from the
    reference's feature-map pixels (its top-left ``rows x cols``) are kept.  With the other edges zero, the
    graph computes what the reference computes: every conv layer sees an input of the reference's size
    (checked), so the kept taps read the same pixels and padding, and the floor-mode pooling windows over
    the reference's pixels are the same.  ``sizes`` computes the graph's conv input sizes (only when the
    kernels differ).

    Raises:
        ValueError: the layer kinds differ, a layer kind is not embeddable, a reference kernel does not
            fit at equal offsets, the conv inputs differ in size, or the reference's feature map is larger.
    """
    hs, rs = conv_weight_slots(graph, "code_tile"), conv_weight_slots(ref, "code_tile")
    if len(hs) == len(rs) and all(h.shape[2:] == r.shape[2:] for h, r in zip(hs, rs)):
        return None
    where = f"code_tile: {spec} grown as {ref_spec}"
    kinds, ref_kinds = [op.kind for op in graph.arch.ops], [op.kind for op in ref.arch.ops]
    if kinds != ref_kinds:
        raise ValueError(f"{where}: the layers differ ({kinds} / {ref_kinds}); only kernel sizes may")
    for op in graph.arch.ops + ref.arch.ops:
        ok = op.kind in _EMBEDDABLE or op.kind in ACTIVATIONS
        if op.kind == "MaxPool2d":
            ok = not op.get("ceil_mode", False) and op.get("padding", 0) in (0, (0, 0))
        if not ok:
            raise ValueError(f"{where}: kernels of different sizes embed exactly only through conv, "
                             f"activation, floor-mode max-pooling, flatten and linear layers, not {op!r}")
    own = sizes()
    if own != ref_sizes:
        raise ValueError(f"{where}: its conv layers see inputs of {own} pixels, the reference's "
                         f"{ref_sizes}; smaller kernels embed exactly only at equal input sizes")
    pos, keep = graph.edge_pos.clone(), torch.ones(graph.num_edges, dtype=torch.bool)
    for i, (h, r) in enumerate(zip(hs, rs)):
        hp, rp = _conv_padding(graph.arch.ops[h.op_index]), _conv_padding(ref.arch.ops[r.op_index])
        rows = slice(h.offset, h.offset + h.numel)
        starts = _tap_starts(r.shape, rp, h.shape, hp)
        if starts is None:
            raise ValueError(f"{where}: conv layer {i}'s reference kernel {tuple(r.shape[2:])} (padding "
                             f"{rp}) does not fit inside its kernel {tuple(h.shape[2:])} (padding {hp}) at "
                             "equal offsets")
        for d, start in enumerate(starts):
            p = pos[rows, 3 + d]
            inside = (p >= start) & (p < start + r.shape[2 + d])
            keep[rows] &= inside
            pos[rows, 3 + d] = torch.where(inside, p - start, p)
    hf, rf = _flat_slot(graph), _flat_slot(ref)
    if hf is not None and rf is not None:
        rows = slice(hf.offset, hf.offset + hf.numel)
        extent = ref.edge_pos[rf.offset:rf.offset + rf.numel, 3:5].amax(0) + 1
        host = pos[rows, 3:5].amax(0) + 1
        if bool((host < extent).any()):
            raise ValueError(f"{where}: the reference's flattened feature map {tuple(extent.tolist())} is "
                             f"larger than its own {tuple(host.tolist())}")
        keep[rows] &= (pos[rows, 3:5] < extent).all(1)
    return pos, keep


def _reindexed_pos(graph: NeuralGraph, node_index: Tensor) -> Tensor:
    """``graph.edge_pos`` with every edge's backward / forward neuron axis (1 / 2) moved to
    ``node_index`` of its source / target neuron where that neuron's index changed, ``[E, 5]``."""
    if node_index.shape != graph.node_pos.shape:
        raise ValueError(f"code: node_index has shape {tuple(node_index.shape)}, the graph has "
                         f"{graph.num_nodes} neurons")
    pos = graph.edge_pos.clone()
    src, dst = graph.edge_index
    moved = node_index != graph.node_pos
    for axis, end in ((2, dst), (1, src)):
        sel = moved[end]
        if not torch.equal(pos[sel, axis], graph.node_pos[end[sel]]):
            raise ValueError(f"code: axis {axis} of edge_pos is not the neuron index of the edges' "
                             "neurons, so it cannot be re-indexed")
        pos[sel, axis] = node_index[end[sel]]
    return pos


def _copies(graph: NeuralGraph, index: Tensor) -> Tensor:
    """``[|V|]``: how many neurons of its layer share each hidden neuron's code ``index[v]`` (1 for
    other neurons)."""
    m = torch.ones(graph.num_nodes, dtype=graph.weight.dtype)
    for _, sel, _ in hidden_layers(graph):
        m[sel] = torch.bincount(index[sel])[index[sel]].to(m.dtype)
    return m


def _fan_in(graph: NeuralGraph, per_edge: Optional[Tensor] = None) -> Tensor:
    """``[|V|]``: the number of weight edges entering each neuron (with ``per_edge`` ``[E]``: the sum of
    their values)."""
    is_w = graph.edge_kind == 0
    dtype = graph.weight.dtype
    vals = torch.ones(int(is_w.sum()), dtype=dtype) if per_edge is None else per_edge[is_w]
    return torch.zeros(graph.num_nodes, dtype=dtype).index_add_(0, graph.edge_index[1][is_w], vals)


def _tile_weights(graph: NeuralGraph, index: Tensor, keep: Optional[Tensor], fan_in_scaling: bool,
                  weight_standardization: bool) -> Optional[Tuple[Tensor, Tensor, Tensor]]:
    """What makes a tiled graph grow and compute exactly its reference: ``(neighbour_weight [E, 2],
    share [E], factor [E])``, or ``None`` when no two neurons share a code and every edge is kept.

    With ``m(v)`` the copies of neuron ``v``'s code, an edge ``u -> v`` counts ``1 / m(v)`` in the
    forward neighbourhoods (sums over the edges leaving ``u``) and ``1 / m(u)`` in the backward ones
    (sums over the edges entering ``v``): every neighbourhood sum is the reference's, so the rule grows
    every copy as the reference edge.  ``share`` (``1 / m(u)`` on weight edges, else 1) counts every
    reference input of a neuron once in its weight-standardisation statistics, and ``factor`` scales the
    network weights so that each neuron's pre-activation is the reference neuron's: ``share`` times
    ``sqrt(fan_in / reference fan_in)`` on the edges whose network weight carries the fan-in gain
    ``1 / sqrt(fan_in)``.

    ``keep`` (``[E]`` bool, optional; see :func:`_kernel_map`) marks the edges that have a reference
    edge: the others count 0 everywhere (neighbourhood sums, statistics) and get network weight 0."""
    m = _copies(graph, index)
    if bool((m == 1).all()) and (keep is None or bool(keep.all())):
        return None
    src, dst = graph.edge_index
    is_w = graph.edge_kind == 0
    one = torch.ones_like(m[:1])
    k = torch.ones_like(graph.weight) if keep is None else keep.to(m.dtype)
    share = torch.where(is_w, k / m[src], one)
    factor = share
    if fan_in_scaling:
        fan, fan_ref = _fan_in(graph), _fan_in(graph, share)
        gained = is_w if not weight_standardization else is_w & (graph.node_role[dst] != NODE_ROLES.index("output"))
        ratio = (fan.clamp_min(1.0) / fan_ref.clamp_min(1.0)).sqrt()
        factor = torch.where(gained, share * ratio[dst], share)
    return torch.stack([k / m[dst], k / m[src]], 1), share, factor


def hidden_layers(graph: NeuralGraph) -> List[Tuple[int, Tensor, int]]:
    """``(node layer, [|V|] mask of its hidden neurons, width)`` for every layer of hidden neurons."""
    hidden = graph.node_role == NODE_ROLES.index("hidden")
    out = []
    for layer in torch.unique(graph.node_layer[hidden]).tolist():
        sel = hidden & (graph.node_layer == layer)
        out.append((int(layer), sel, int(sel.sum())))
    return out


class GraphFactory:
    """Builds (and caches) template graphs and fresh initial states for architecture specs.

    Args:
        hidden_dim (int): hidden-state width ``H``.
        hidden_init (str): position-code kind.
        code_base (float): longest sinusoid wavelength of the code.
        input_grid (list of int, optional): ``[rows, cols]`` of the image fed
            to an MLP: its first layer's input neuron ``j`` is coded by pixel
            ``(j // cols, j % cols)`` (kernel row/column axes of the code).
        weight_init (str): ``"zeros"`` or ``"normal"``.
        weight_std (float): std of ``"normal"`` initial weights.
        activation (str): MLP activation.
        input_shape (tuple, optional): per-sample input shape (CNNs).
        fan_in_scaling (bool): the network uses ``weight * gain`` with
            ``gain = 1 / sqrt(fan_in)`` of each weight edge's target neuron
            (biases: 1), so the rule works in fan-in-normalised units and the
            same weight values suit layers of any width ("equalised learning
            rate").  :meth:`network_weight` applies it; saved modules hold the
            scaled values.
        weight_standardization (bool): the network uses each neuron's incoming
            weights standardised to zero mean and unit variance (Qiao et al.,
            2019, times ``gain``): the rule only has to get the *pattern* of a
            hidden neuron's weights right, not their common offset or scale.
            Output neurons use their rule-space weights as they are (no
            standardisation, no fan-in gain: a free logit scale).
        hidden_bias (bool): ``False`` fixes the biases of hidden neurons at
            zero in the network (output biases stay free).  With standardised
            (zero-mean) incoming weights a hidden ReLU unit then stays active on
            part of the data; free hidden biases let meta-training drive whole
            layers negative and dead (a CNN probe collapsed to loss 2.30 so).
        kernel_offsets (bool): code a conv weight's kernel row/column by its
            tap's offset from the output pixel (``index - padding``, plus
            :data:`KERNEL_CENTRE` to keep codes non-negative) instead of the
            raw index, so the same code means the same spatial offset in
            kernels of every size (with raw indices, index 2 is the centre of a
            5x5 kernel but the bottom row of a 3x3 one).
        hidden_code_range (int): ``R > 0`` codes hidden neuron ``i`` of a layer
            of width ``X`` by ``floor(i * R / X)`` (its relative position,
            spread over ``0 .. R - 1``) instead of ``i``, so layers of every
            width sample the same code range; a layer wider than ``R`` is
            refused (two neurons would share a code and grow identically).
            ``0`` = absolute indices.
        code_tile (str): a reference architecture spec (``"cnn:m=0.5,k=5,h=32"``).
            Hidden neuron ``i`` of the ``l``-th hidden layer is indexed
            ``i mod W_l``, ``W_l`` the width of the reference's ``l``-th hidden
            layer, in both places a rule sees neuron indices: the position code
            and the graph's ``edge_pos`` (the Weight Transformer's rotary
            positions).  A layer wider than the reference then consists of
            copies of the reference's neurons.  The template's
            ``neighbour_weight`` counts each copy ``1 / copies`` in the rules'
            neighbourhood sums, so a rule grows every copy exactly as the
            reference edge, and the network weights of edges leaving copies are
            scaled so that the grown network computes exactly the grown
            reference's function (:meth:`tile_index`, :meth:`network_weight`): a
            rule fitted to the reference's widths grows a wider network without
            meeting indices it never saw.  Widths need not be multiples of the
            reference's.
            Layers no wider than the reference keep their indices.  A CNN whose
            kernels are larger than the reference's (``k=4`` grown as ``k=3``)
            has the reference's kernels embedded at equal offsets from the
            output pixel; the other taps weigh 0 in the neighbourhood sums and
            in the network (:meth:`tile_kernels`).  ``""`` = off.
    """

    def __init__(self, hidden_dim: int = 16, hidden_init: str = "sinusoidal", code_base: float = 1000.0,
                 input_grid: Optional[Sequence[int]] = None, weight_init: str = "zeros",
                 weight_std: float = 0.0, activation: str = "relu",
                 input_shape: Optional[Tuple[int, ...]] = None, fan_in_scaling: bool = False,
                 weight_standardization: bool = False, hidden_bias: bool = True,
                 kernel_offsets: bool = False, hidden_code_range: int = 0, code_tile: str = "") -> None:
        if hidden_code_range < 0:
            raise ValueError(f"hidden_code_range must be >= 0, got {hidden_code_range}")
        if code_tile and hidden_code_range:
            raise ValueError("code_tile and hidden_code_range both re-index hidden neurons; set one of them")
        self.hidden_code_range = hidden_code_range
        self.code_tile = arch_name(code_tile) if code_tile else ""
        self._tile_widths: Optional[List[int]] = None
        self._tile_ref: Optional[NeuralGraph] = None  # the code_tile reference's graph
        self._tile_ref_sizes: List[Tuple[int, ...]] = []  # ... and its conv layers' input sizes
        self.hidden_bias = hidden_bias
        self.kernel_offsets = kernel_offsets
        self.fan_in_scaling = fan_in_scaling or weight_standardization
        self.weight_standardization = weight_standardization
        self._gains: Dict[str, Tensor] = {}
        self.hidden_dim = hidden_dim
        self.hidden_init = hidden_init
        self.code_base = code_base
        self.input_grid = list(input_grid) if input_grid else None
        self.weight_init = weight_init
        self.weight_std = weight_std
        self.activation = activation
        self.input_shape = input_shape
        self._templates: Dict[str, NeuralGraph] = {}
        self.data_x: Optional[Tensor] = None
        self.data_y: Optional[Tensor] = None

    def set_data(self, x: Optional[Tensor], y: Optional[Tensor] = None) -> None:
        """Probe batch for data-conditioned rules: every template graph carries
        ``(x, weight -> network weight, y)``, which a data-conditioned ``MLPRule``
        uses when called without a batch (activations of the network as it
        really computes, i.e. after fan-in scaling / standardisation; the labels
        ``y``, if given, for ``MLPRule(coactivation="labels")``)."""
        if x is not None and y is not None and y.shape[0] != x.shape[0]:
            raise ValueError(f"set_data: {y.shape[0]} labels for {x.shape[0]} probe inputs")
        self.data_x = x
        self.data_y = None if x is None else y
        for key, graph in self._templates.items():
            self._attach(key, graph)

    def _attach(self, key: str, graph: NeuralGraph) -> None:
        if self.data_x is None:
            graph.__dict__.pop("data_probe", None)
        else:
            graph.__dict__["data_probe"] = (self.data_x, functools.partial(self.network_weight, key), self.data_y)

    def template(self, spec: str | Sequence[int]) -> NeuralGraph:
        """The cached template graph of ``spec`` (weights as in its initial state)."""
        key = arch_name(spec)
        if key not in self._templates:
            model = build_arch(key, self.activation)
            shape = self.input_shape if key.startswith("cnn") else None
            graph = to_neural_graph(model, hidden_dim=self.hidden_dim, input_shape=shape,
                                    hidden_init="zeros")
            if self.code_tile:
                index = self.tile_index(graph, key)
                kmap = self.tile_kernels(graph, key, model)
                keep = None
                if kmap is not None:
                    # the code of a kept tap is the reference tap's: kernel_offsets codes the host's own
                    # indices by their offset (the reference's offset), raw codes need the reference's indices
                    ref_pos, keep = kmap
                    if not self.kernel_offsets:
                        graph.edge_pos = ref_pos
                    graph.hidden = self.code(graph, index)
                    graph.edge_pos = ref_pos
                    graph.__dict__["tile_kernels"] = True  # the reference's kernels are embedded
                else:
                    graph.hidden = self.code(graph, index)
                graph.edge_pos = _reindexed_pos(graph, index)
                tile = _tile_weights(graph, index, keep, self.fan_in_scaling, self.weight_standardization)
                if tile is not None:
                    graph.neighbour_weight = tile[0]
                    graph.__dict__["tile_factor"] = tile[1:]
            else:
                graph.hidden = self.code(graph)
            self._templates[key] = graph
            self._attach(key, graph)
        return self._templates[key]

    def forget(self, spec: str | Sequence[int]) -> None:
        """Drop ``spec``'s cached template and gains (large graphs in a sweep); the next
        :meth:`template` call builds them again."""
        key = arch_name(spec)
        self._templates.pop(key, None)
        self._gains.pop(key, None)

    def gain(self, spec: str | Sequence[int]) -> Tensor:
        """Per-edge multiplier from rule units to network weights, ``[E]``."""
        key = arch_name(spec)
        if key not in self._gains:
            g = self.template(key)
            if not self.fan_in_scaling:
                self._gains[key] = torch.ones_like(g.weight)
            else:
                gain = _fan_in(g)[g.edge_index[1]].clamp_min(1.0).rsqrt()
                self._gains[key] = torch.where(g.edge_kind == 0, gain, torch.ones_like(gain))
        return self._gains[key]

    def network_weight(self, spec: str | Sequence[int], weight: Tensor) -> Tensor:
        """The network's parameters (``weight * gain``) for a rule-space weight vector.

        On a ``code_tile`` graph whose neurons share codes, the edges leaving a copied neuron are also
        weighed (see :func:`_tile_weights`): by ``1 / copies`` in the standardisation statistics, and in
        the result so that every neuron's pre-activation is its reference neuron's.  Copies of the
        reference's rule-space weights then compute exactly the reference's function."""
        g = self.template(spec)
        if not self.hidden_bias:
            hidden_b = (g.edge_kind == 1) & (g.node_role[g.edge_index[1]] != 2)
            weight = weight.masked_fill(hidden_b, 0.0)
        tile = g.__dict__.get("tile_factor")  # (share, factor) on code_tile templates with copies
        if self.weight_standardization:
            dst = g.edge_index[1]
            # hidden layers only: the output layer keeps a free scale (logit temperature)
            is_w = ((g.edge_kind == 0) & (g.node_role[dst] != 2)).to(weight.dtype)
            a = is_w if tile is None else is_w * tile[0]  # copies: each reference input counts once
            n = g.num_nodes
            cnt = torch.zeros(n, dtype=weight.dtype).index_add_(0, dst, a).clamp_min(1.0)
            mean = torch.zeros(n, dtype=weight.dtype).index_add_(0, dst, weight * a) / cnt
            cen = weight - mean[dst]
            var = torch.zeros(n, dtype=weight.dtype).index_add_(0, dst, cen * cen * a) / cnt
            std_w = cen * torch.rsqrt(var[dst] + 1e-5)
            out = torch.where(is_w.bool(), std_w * self.gain(spec), weight)
        else:
            out = weight * self.gain(spec) if self.fan_in_scaling else weight
        return out if tile is None else out * tile[1]

    def module(self, spec: str | Sequence[int], weight: Tensor) -> nn.Module:
        """The grown ``nn.Sequential`` (network weights written back with ``to_module``)."""
        g = copy.copy(self.template(spec))
        g.weight = self.network_weight(spec, weight.detach())
        return g.to_module()

    def code(self, graph: NeuralGraph, node_index: Optional[Tensor] = None) -> Tensor:
        """Initial hidden states: the position code, ``[E, H]``.

        ``node_index`` (``[|V|]``, optional) codes neuron ``v`` by index
        ``node_index[v]`` instead of ``graph.node_pos[v]``: every edge entering or
        leaving a neuron whose index changed takes the new index in its
        forward/backward neuron axis.  Without it, ``hidden_code_range`` (if set)
        gives the indices (:meth:`relative_index`)."""
        if node_index is None and self.hidden_code_range:
            node_index = self.relative_index(graph)
        pos = graph.edge_pos.clone() if node_index is None else _reindexed_pos(graph, node_index)
        if self.input_grid is not None:
            rows, cols = self.input_grid
            first = (pos[:, 0] == 0) & (graph.edge_kind == 0) & (pos[:, 3] == 0) & (pos[:, 4] == 0)
            j = pos[first, 1]
            if j.numel() and int(j.max()) < rows * cols:
                pos[first, 3] = j // cols
                pos[first, 4] = j % cols
                pos[first, 1] = 0
        if self.kernel_offsets:
            _centre_kernel_positions(graph, pos)
        return position_code(pos, self.hidden_dim, self.hidden_init, base=self.code_base,
                             dtype=graph.weight.dtype)

    def relative_index(self, graph: NeuralGraph) -> Tensor:
        """Neuron indices with hidden neuron ``i`` of a width-``X`` layer at
        ``floor(i * hidden_code_range / X)``, ``[|V|]`` (others unchanged)."""
        r = self.hidden_code_range
        index = graph.node_pos.clone()
        for layer, sel, width in hidden_layers(graph):
            if width > r:
                raise ValueError(f"hidden layer {layer} has {width} neurons, more than grow.hidden_code_range="
                                 f"{r}: neurons would share codes")
            index[sel] = torch.div(graph.node_pos[sel] * r, width, rounding_mode="floor")
        return index

    def tile_index(self, graph: NeuralGraph, spec: str = "") -> Tensor:
        """Neuron indices with hidden neuron ``i`` of the ``l``-th hidden layer at ``i mod W_l``
        (``W_l``: the ``code_tile`` reference's ``l``-th hidden width), ``[|V|]``.

        A layer of width ``c * W_l`` holds ``c`` copies of every reference code
        (a width that is not a multiple holds some codes once more than others).
        The template then carries a ``neighbour_weight`` that counts each copy
        ``1 / copies`` in the rules' neighbourhood sums, so that every sum is the
        reference's and a rule grows every copy exactly as its reference edge,
        and :meth:`network_weight` scales the edges leaving copies so that every
        neuron's pre-activation is its reference neuron's (see
        :func:`_tile_weights`): the wide network computes the reference's
        function.

        Raises:
            ValueError: the graph and the reference have different numbers of
                hidden layers (``spec`` names the graph in the message).
        """
        self._tile_reference()
        assert self._tile_widths is not None
        layers = hidden_layers(graph)
        if len(layers) != len(self._tile_widths):
            raise ValueError(f"code_tile: {spec or 'the graph'} has {len(layers)} hidden layers, the reference "
                             f"{self.code_tile} has {len(self._tile_widths)}")
        index = graph.node_pos.clone()
        for (_, sel, _), ref_width in zip(layers, self._tile_widths):
            index[sel] = graph.node_pos[sel] % ref_width
        return index

    def _tile_reference(self) -> NeuralGraph:
        """The ``code_tile`` reference's graph (built once, with its hidden widths and conv input sizes)."""
        if self._tile_ref is None:
            model = build_arch(self.code_tile, self.activation)
            cnn = self.code_tile.startswith("cnn")
            self._tile_ref = to_neural_graph(model, input_shape=self.input_shape if cnn else None)
            self._tile_widths = [w for _, _, w in hidden_layers(self._tile_ref)]
            if cnn and self.input_shape is not None:
                self._tile_ref_sizes = _conv_input_sizes(model, self.input_shape)
        return self._tile_ref

    def tile_kernels(self, graph: NeuralGraph, spec: str, model: nn.Module) -> Optional[Tuple[Tensor, Tensor]]:
        """For a CNN whose kernels differ from the ``code_tile`` reference's: ``(edge_pos [E, 5],
        keep [E] bool)`` (:func:`_kernel_map`), else ``None``.

        A reference with smaller kernels (``k=3`` for a ``k=4`` CNN, say) is embedded: every reference
        tap has the graph's tap at the same offset from the output pixel, the reference's position
        and code, and the other taps (and the dense inputs from feature-map pixels the reference does
        not have) are kept out of the rules' neighbourhood sums and get network weight 0.  The graph
        then grows and computes exactly the reference's function."""
        if not (spec.startswith("cnn") and self.code_tile.startswith("cnn")) or self.input_shape is None:
            return None
        return _kernel_map(graph, self._tile_reference(), lambda: _conv_input_sizes(model, self.input_shape),
                           self._tile_ref_sizes, spec, self.code_tile)

    def subset_code(self, spec: str | Sequence[int], generator: Optional[torch.Generator] = None,
                    code_range: int = 0) -> Tensor:
        """The position code of ``spec`` with each hidden layer's ``width`` neurons coded
        by a random subset of ``0 .. max(code_range, width) - 1`` (a random injection,
        drawn per layer) instead of ``0 .. width - 1``, ``[E, H]``.  A layer as wide as
        the range gets a random permutation of its own codes, which a
        permutation-equivariant rule grows into the same network, permuted.
        Inputs, outputs and bias neurons keep their codes."""
        if self.hidden_code_range or self.code_tile:
            raise ValueError("subset_code draws absolute indices; it does not combine with hidden_code_range "
                             "or code_tile")
        g = self.template(spec)
        index = g.node_pos.clone()
        for _, sel, width in hidden_layers(g):
            pick = torch.randperm(max(width, code_range), generator=generator)[:width]
            index[sel] = pick[g.node_pos[sel]]
        return self.code(g, index)

    def fresh(self, spec: str | Sequence[int], generator: Optional[torch.Generator] = None) -> State:
        """A new initial state ``(weight, hidden)``."""
        g = self.template(spec)
        if self.weight_init == "zeros" or self.weight_std == 0:
            w = torch.zeros_like(g.weight)
        else:
            w = torch.randn(g.weight.shape, generator=generator, dtype=g.weight.dtype) * self.weight_std
        return w, g.hidden.clone()

    def graph(self, spec: str | Sequence[int], state: State) -> NeuralGraph:
        """A shallow copy of the template carrying ``state``."""
        g = copy.copy(self.template(spec))
        g.weight, g.hidden = state
        return g


def _run_steps(template: NeuralGraph, rule: nn.Module, w: Tensor, h: Tensor, n: int, fire_rate: float,
               seed: int) -> State:
    gen = torch.Generator().manual_seed(seed)  # re-created on recomputation: same masks
    g = copy.copy(template)
    for _ in range(n):
        g.weight, g.hidden = w, h
        g = step(g, rule, fire_rate=fire_rate, generator=gen)
        w, h = g.weight, g.hidden
    return w, h


class _Recompute(torch.autograd.Function):
    """Reentrant-style checkpoint of ``fn(w, h) -> (w', h')``: the forward runs without
    autograd (so a rule may take its fused no-grad kernel), the backward recomputes ``fn``
    with autograd and returns the gradients of ``w``, ``h`` and the rule's parameters.
    Unlike :func:`torch.utils.checkpoint.checkpoint` with ``use_reentrant=True`` it works
    with :func:`torch.autograd.grad` because the parameters are explicit inputs."""

    @staticmethod
    def forward(ctx, fn: Callable[[Tensor, Tensor], State], w: Tensor, h: Tensor,  # type: ignore[override]
                *params: Tensor) -> State:
        ctx.fn = fn
        ctx.params = params
        ctx.save_for_backward(w, h)
        w2, h2 = fn(w, h)  # autograd is off inside Function.forward
        return w2, h2

    @staticmethod
    def backward(ctx, gw: Tensor, gh: Tensor):  # type: ignore[override]
        w, h = ctx.saved_tensors
        need = ctx.needs_input_grad
        with torch.enable_grad():
            wi = w.detach().requires_grad_(need[1])
            hi = h.detach().requires_grad_(need[2])
            w2, h2 = ctx.fn(wi, hi)
            wrt = [x for x, n in zip((wi, hi), need[1:3]) if n]
            wrt += [p for p, n in zip(ctx.params, need[3:]) if n]
            grads = iter(torch.autograd.grad((w2, h2), wrt, (gw, gh), allow_unused=True)) if wrt else iter(())
        out = [next(grads) if n else None for n in need[1:]]
        return (None, *out)


def unroll(template: NeuralGraph, rule: nn.Module, state: State, steps: int, fire_rate: float,
           seed: int, chunk: int = 5, use_checkpoint: bool | str = True,
           callback: Optional[Callable[[int, State], None]] = None) -> State:
    """Apply ``steps`` stochastic rule updates, differentiably.

    The steps run in chunks of ``chunk``.  With autograd on, ``use_checkpoint``
    chooses how each chunk's activations are kept:

    * ``True`` / ``"torch"``: :func:`torch.utils.checkpoint.checkpoint` -- memory
      holds one chunk's activations plus the states between chunks; the chunk's
      forward runs twice with autograd;
    * ``"native"``: the same memory, but the first forward runs without autograd
      (the rules' fused CPU kernels where they run) and only the recomputation in
      the backward pass builds a graph.  The kernel rounds differently from the
      PyTorch path (about 1e-6), so gradients are taken at states that differ from
      the returned ones at that level;
    * ``False`` / ``"none"``: no checkpointing, every step's activations are kept
      (fastest for graphs whose activations fit in memory many times over).

    Without autograd all three are the same plain loop.  The fire masks come
    from a generator seeded by ``seed`` and the chunk start, so recomputation
    reproduces them exactly.
    """
    mode = {True: "torch", False: "none"}.get(use_checkpoint, use_checkpoint)  # type: ignore[call-overload]
    if mode not in CHECKPOINT_MODES:
        raise ValueError(f"use_checkpoint must be a bool or one of {CHECKPOINT_MODES}, got {use_checkpoint!r}")
    if not torch.is_grad_enabled():
        mode = "none"
    params = tuple(p for p in rule.parameters() if p.requires_grad) if mode == "native" else ()
    w, h = state
    done = 0
    while done < steps:
        n = min(chunk, steps - done)
        s = seed * 100003 + done
        if mode == "torch":
            w, h = checkpoint(_run_steps, template, rule, w, h, n, fire_rate, s, use_reentrant=False)
        elif mode == "native":
            fn = functools.partial(_run_steps, template, rule, n=n, fire_rate=fire_rate, seed=s)
            w, h = _Recompute.apply(fn, w, h, *params)
        else:
            w, h = _run_steps(template, rule, w, h, n, fire_rate, s)
        done += n
        if callback is not None:
            callback(done, (w, h))
    return w, h


def logits(template: NeuralGraph, weight: Tensor, x: Tensor, batch: int = 4096) -> Tensor:
    """Outputs of the network with weights ``weight`` on ``x`` (in batches)."""
    if x.size(0) <= batch:
        return template.forward(x, weight=weight)
    return torch.cat([template.forward(x[i:i + batch], weight=weight) for i in range(0, x.size(0), batch)])


@torch.no_grad()
def accuracy(template: NeuralGraph, weight: Tensor, x: Tensor, y: Tensor) -> Tuple[float, float]:
    """``(accuracy, cross-entropy)`` of the network on ``(x, y)``."""
    out = logits(template, weight, x)
    if not torch.isfinite(out).all():
        return 0.0, float("nan")
    return float((out.argmax(-1) == y).float().mean()), float(F.cross_entropy(out, y))


@torch.no_grad()
def grow_trajectory(factory: GraphFactory, rule: nn.Module, spec: str, steps: int, fire_rate: float,
                    seed: int, data: Tuple[Tensor, Tensor], state: Optional[State] = None,
                    every: int = 1, track_edges: int = 0,
                    perturb: Optional[Callable[[int, State], State]] = None) -> Dict[str, List]:
    """Grow ``spec`` for ``steps`` steps (no autograd), recording accuracy/loss every ``every`` steps.

    Returns a dict with ``step``, ``acc``, ``loss`` lists, ``weights`` (the
    first ``track_edges`` edges of every layer at each recorded step), the
    final ``state`` and ``grow_seconds`` (time in rule steps, evaluation excluded).
    ``perturb(step, state)`` may modify the state before a
    step (zero-out experiments).
    """
    template = factory.template(spec)
    gen = torch.Generator().manual_seed(seed)
    w, h = state if state is not None else factory.fresh(spec, gen)
    x, y = data
    rec: Dict[str, List] = {"step": [], "acc": [], "loss": [], "weights": []}
    layer = template.edge_pos[:, 0]
    tracked = torch.cat([(layer == lay).nonzero().view(-1)[:track_edges]
                         for lay in torch.unique(layer)]) if track_edges else None

    def record(t: int) -> None:
        acc, loss = accuracy(template, factory.network_weight(spec, w), x, y)
        rec["step"].append(t)
        rec["acc"].append(acc)
        rec["loss"].append(loss)
        if tracked is not None:
            rec["weights"].append(w[tracked].tolist())

    record(0)
    g = copy.copy(template)
    grow_seconds = 0.0
    for t in range(1, steps + 1):
        if perturb is not None:
            w, h = perturb(t, (w, h))
        g.weight, g.hidden = w, h
        t0 = time.perf_counter()
        g = step(g, rule, fire_rate=fire_rate, generator=gen)
        grow_seconds += time.perf_counter() - t0
        w, h = g.weight, g.hidden
        if t % every == 0 or t == steps:
            record(t)
    rec["state"] = [w, h]  # type: ignore[list-item]
    rec["grow_seconds"] = grow_seconds  # type: ignore[assignment]  # rule steps only, no evaluation
    rec["tracked_layers"] = layer[tracked].tolist() if tracked is not None else []
    return rec
