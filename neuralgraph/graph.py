r"""The :class:`NeuralGraph` container: a PyG ``Data`` whose edges are parameters."""

from __future__ import annotations

import copy
from typing import Any, List, Optional, Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch, Data

from neuralgraph.architecture import ACTIVATIONS, Architecture
from neuralgraph.errors import NeuralGraphError, WeightShapeError
from neuralgraph.neighbourhood import Neighbourhoods

__all__ = ["NeuralGraph", "NODE_ROLES", "EDGE_KINDS", "batch_graphs"]

#: ``NeuralGraph.node_role`` codes.
NODE_ROLES = ("input", "hidden", "output", "bias")
#: ``NeuralGraph.edge_kind`` codes.
EDGE_KINDS = ("weight", "bias")


class NeuralGraph(Data):
    r"""A neural network as a graph: neurons are nodes, parameters are edges.

    Edges are stored in parameter memory order, layer by layer (the order of
    ``model.parameters()``), so ``graph.weight`` is
    ``torch.cat([p.flatten() for p in model.parameters()])`` and each parameter
    tensor is a reshaped slice of it.  Biases are edges from one constant *bias
    neuron* per layer.  A Conv kernel element ``W[o, c, u, v]`` is the edge
    ``c -> o`` at kernel position ``(u, v)``.  A Linear layer after ``Flatten``
    of a ``[C, H, W]`` feature map takes its inputs from the channel nodes: the
    flattened neuron ``(c, y, x)`` is channel node ``c`` with spatial position
    ``(y, x)`` in the kernel axes of ``edge_pos``, so neighbourhoods cross the
    conv -> dense boundary.  BatchNorm is *represented*, not folded: its affine
    ``gamma_c`` is an edge from channel ``c`` to a new node ``c'`` and its ``beta_c``
    a bias edge; running statistics stay on ``arch``.

    Attributes:
        edge_index (LongTensor): ``[2, |E|]`` source and target neurons.
        weight (Tensor): ``[|E|]`` parameter values.
        hidden (Tensor): ``[|E|, H]`` hidden states.
        edge_pos (LongTensor): ``[|E|, 5]`` positions (layer, backward neuron,
            forward neuron, kernel row, kernel column).
        edge_kind (LongTensor): ``[|E|]`` :data:`EDGE_KINDS` code.
        node_layer (LongTensor): ``[|V|]`` neuron layer (inputs are layer 0;
            outputs of parametrised layer ``l`` are layer ``l + 1``; the bias
            neuron of layer ``l`` sits in layer ``l``).
        node_pos (LongTensor): ``[|V|]`` index within the layer (channel).
        node_act (LongTensor): ``[|V|]`` activation code, see ``ACTIVATIONS``.
        node_role (LongTensor): ``[|V|]`` :data:`NODE_ROLES` code.
        arch (Architecture): how to rebuild and run the network.
    """

    # --- convenience views ---------------------------------------------------------
    @property
    def edge_layer(self) -> Tensor:
        """Layer id of every edge, ``[|E|]``."""
        return self.edge_pos[:, 0]

    @property
    def hidden_dim(self) -> int:
        return int(self.hidden.size(-1))

    @property
    def is_batch(self) -> bool:
        return isinstance(self, Batch)

    def neighbourhoods(self) -> Neighbourhoods:
        """Forward/backward neighbourhood index (node-level segments)."""
        return Neighbourhoods(self.edge_index, self.num_nodes)

    # --- conversion back -----------------------------------------------------------
    def _single_arch(self, what: str) -> Architecture:
        if self.is_batch:
            raise NeuralGraphError(
                f"{what}() needs a single graph; call batch.to_data_list() first")
        arch = getattr(self, "arch", None)
        if not isinstance(arch, Architecture):
            raise NeuralGraphError(f"{what}(): graph has no Architecture in `arch`")
        return arch

    def to_module(self) -> nn.Sequential:
        """A runnable ``nn.Sequential`` computing exactly this graph's network."""
        from neuralgraph.convert import to_module

        return to_module(self)

    def forward(self, x: Tensor, weight: Optional[Tensor] = None, training: bool = False) -> Tensor:
        r"""Run the network straight from the edge-weight vector.

        Differentiable with respect to ``weight`` (default ``self.weight``); no
        weights are copied: parameters are views of slices of ``weight``.

        Args:
            x (Tensor): input batch ``[B, *input_shape]``.
            weight (Tensor, optional): ``[|E|]`` weights to use instead of
                ``self.weight``.
            training (bool, optional): run Dropout/BatchNorm in train mode.
                (default: ``False``)
        """
        from neuralgraph.functional import forward

        arch = self._single_arch("forward")
        return forward(arch, self.weight if weight is None else weight, x, training=training)

    # --- checks --------------------------------------------------------------------
    def validate(self, raise_on_error: bool = True) -> bool:
        """Check shapes, index ranges and the parameter layout."""
        errors: List[str] = []
        n = self.num_nodes
        ei = self.edge_index
        if ei is None or ei.dim() != 2 or ei.size(0) != 2:
            errors.append(f"edge_index must be [2, E], got {None if ei is None else tuple(ei.shape)}")
        else:
            e = ei.size(1)
            if e and (int(ei.min()) < 0 or int(ei.max()) >= n):
                errors.append(f"edge_index values must lie in [0, {n}), got "
                              f"[{int(ei.min())}, {int(ei.max())}]")
            for key, shape in (("weight", (e,)), ("edge_kind", (e,))):
                val = getattr(self, key, None)
                if val is None or tuple(val.shape) != shape:
                    errors.append(f"{key} must have shape {shape}, got "
                                  f"{None if val is None else tuple(val.shape)}")
            for key, width in (("hidden", None), ("edge_pos", 5)):
                val = getattr(self, key, None)
                if val is None or val.dim() != 2 or val.size(0) != e or (
                        width is not None and val.size(1) != width):
                    errors.append(f"{key} must have shape [{e}, {width or 'H'}], got "
                                  f"{None if val is None else tuple(val.shape)}")
            if not self.is_batch and isinstance(getattr(self, "arch", None), Architecture):
                if self.arch.num_params != e:
                    errors.append(f"graph has {e} edges but its architecture has "
                                  f"{self.arch.num_params} parameters")
        for key in ("node_layer", "node_pos", "node_act", "node_role"):
            val = getattr(self, key, None)
            if val is None or tuple(val.shape) != (n,):
                errors.append(f"{key} must have shape ({n},), got "
                              f"{None if val is None else tuple(val.shape)}")
        act = getattr(self, "node_act", None)
        if act is not None and act.numel() and int(act.max()) >= len(ACTIVATIONS):
            errors.append(f"node_act has unknown code {int(act.max())}")
        if errors and raise_on_error:
            raise NeuralGraphError("invalid NeuralGraph: " + "; ".join(errors))
        return not errors

    def check_weight(self, weight: Tensor) -> None:
        """Raise :class:`WeightShapeError` unless ``weight`` fits this graph."""
        if weight.dim() != 1 or weight.numel() != self.num_edges:
            raise WeightShapeError(
                f"weight must have shape ({self.num_edges},), got {tuple(weight.shape)}")

    def __inc__(self, key: str, value: Any, *args: Any, **kwargs: Any) -> Any:
        if key == "edge_index":
            return self.num_nodes
        return super().__inc__(key, value, *args, **kwargs)


def batch_graphs(graphs: Sequence[Data]) -> Batch:
    """``Batch.from_data_list`` for neural graphs where only some carry ``neighbour_weight`` ``[E, 2]``.

    PyG collates the attributes of the first graph: a later graph without one raises ``KeyError``, and a
    later graph *with* one loses it silently.  Here every graph without it gets all ones (the plain
    aggregation, see :func:`neuralgraph.rules.base.neighbour_weight`) in the dtype of the graphs that have
    it, so each graph of the batch is aggregated as it would be alone.  Graphs are not modified.

    Raises:
        ValueError: ``graphs`` is empty.
    """
    graphs = list(graphs)
    if not graphs:
        raise ValueError("batch_graphs: no graphs to batch")
    have = [g for g in graphs if getattr(g, "neighbour_weight", None) is not None]
    if have and len(have) < len(graphs):
        dtype = have[0].neighbour_weight.dtype
        graphs = [g if getattr(g, "neighbour_weight", None) is not None else _with_unit_weights(g, dtype)
                  for g in graphs]
    return Batch.from_data_list(graphs)


def _with_unit_weights(graph: Data, dtype: torch.dtype) -> Data:
    """A shallow copy of ``graph`` with an all-ones ``neighbour_weight`` ``[E, 2]`` (the plain aggregation)."""
    g = copy.copy(graph)
    g.neighbour_weight = torch.ones(graph.num_edges, 2, dtype=dtype)
    return g
