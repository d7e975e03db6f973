r"""Input features of weight-space encoders, straight from a :class:`~neuralgraph.NeuralGraph`.

Node features (:class:`NodeFeatures`) embed what a neuron *is* without saying
*which* hidden neuron it is, so every encoder built on them is equivariant to
permutations of hidden neurons:

* its role (input / hidden / output / bias) and activation kind (``node_act``);
* a positional embedding for **input** neurons (by ``node_pos``: input channel)
  and **output** neurons (by ``node_pos``: class), which are not permutable;
* one embedding per layer shared by all hidden (and bias) neurons of that layer.

Edge features (:class:`EdgeFeatures`) embed the weight value, the kernel
position (``edge_pos`` columns 3-4: kernel row/column, or the spatial position
``(y, x)`` for a Linear after Flatten) and the edge kind (weight / bias).  The
neuron-index columns 1-2 of ``edge_pos`` are deliberately *not* used: they
would break permutation symmetry.

:class:`ProbeFeatures` adds, per neuron, its activations on ``P`` learned
probe inputs (evaluated functionally from the weight vector, so gradients
reach the probes).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from neuralgraph.architecture import ACTIVATIONS
from neuralgraph.errors import NeuralGraphError

__all__ = ["NodeFeatures", "EdgeFeatures", "ProbeFeatures", "GraphInputs", "node_batch"]


def node_batch(graph: Any) -> Tensor:
    """Graph id of every node, ``[|V|]`` (zeros for a single graph)."""
    batch = getattr(graph, "batch", None)
    if batch is None:
        return torch.zeros(graph.num_nodes, dtype=torch.long, device=graph.edge_index.device)
    return batch


def _check_range(name: str, values: Tensor, size: int, what: str) -> None:
    if values.numel() and int(values.max()) >= size:
        raise NeuralGraphError(f"{name}: {what} {int(values.max())} is out of range; the encoder was "
                               f"built for at most {size} (raise the corresponding max_* argument)")


class NodeFeatures(nn.Module):
    r"""Permutation-equivariant node embeddings of a neural graph.

    .. math::
        x_v = E_{\mathrm{role}}[r_v] + E_{\mathrm{act}}[a_v] + \begin{cases}
        E_{\mathrm{in}}[p_v] & v \text{ input} \\ E_{\mathrm{out}}[p_v] & v \text{ output} \\
        E_{\mathrm{layer}}[\ell_v] & v \text{ hidden or bias} \end{cases}

    Args:
        dim (int): embedding width ``F``.
        max_inputs (int, optional): most input neurons (channels). (default: ``16``)
        max_outputs (int, optional): most output neurons. (default: ``16``)
        max_layers (int, optional): most neuron layers. (default: ``16``)

    Shapes:
        - **input:** a graph with ``|V|`` nodes
        - **output:** ``[|V|, F]``
    """

    def __init__(self, dim: int, max_inputs: int = 16, max_outputs: int = 16, max_layers: int = 16) -> None:
        super().__init__()
        self.dim = dim
        self.max_inputs = max_inputs
        self.max_outputs = max_outputs
        self.max_layers = max_layers
        self.role = nn.Embedding(4, dim)
        self.act = nn.Embedding(len(ACTIVATIONS), dim)
        self.inputs = nn.Embedding(max_inputs, dim)
        self.outputs = nn.Embedding(max_outputs, dim)
        self.layer = nn.Embedding(max_layers, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for emb in (self.role, self.act, self.inputs, self.outputs, self.layer):
            nn.init.normal_(emb.weight, std=0.5)

    def forward(self, graph: Any) -> Tensor:
        role, pos, layer = graph.node_role, graph.node_pos, graph.node_layer
        _check_range("NodeFeatures", layer, self.max_layers, "layer index")
        is_in, is_out = role == 0, role == 2
        _check_range("NodeFeatures", pos[is_in], self.max_inputs, "input neuron position")
        _check_range("NodeFeatures", pos[is_out], self.max_outputs, "output neuron position")
        x = self.role(role) + self.act(graph.node_act)  # (V, F)
        zero = torch.zeros_like(pos)
        x = x + torch.where(is_in.unsqueeze(-1), self.inputs(torch.where(is_in, pos, zero)),
                            torch.where(is_out.unsqueeze(-1), self.outputs(torch.where(is_out, pos, zero)),
                                        self.layer(layer)))
        return x

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.dim}, max_inputs={self.max_inputs}, "
                f"max_outputs={self.max_outputs}, max_layers={self.max_layers})")


class EdgeFeatures(nn.Module):
    r"""Edge embeddings: weight value, kernel position and edge kind.

    .. math::
        e_{ij} = W_w\,[w_{ij}/s,\ (w_{ij}/s)^2] + E_{\mathrm{row}}[u_{ij}]
        + E_{\mathrm{col}}[v_{ij}] + E_{\mathrm{kind}}[k_{ij}]

    Args:
        dim (int): embedding width ``F``.
        max_kernel (int, optional): largest kernel row/column (or spatial
            position after Flatten) + 1. (default: ``16``)
        weight_scale (float, optional): ``s``, divides the raw weights.
            (default: ``1.0``)

    Shapes:
        - **input:** a graph with ``|E|`` edges
        - **output:** ``[|E|, F]``
    """

    def __init__(self, dim: int, max_kernel: int = 16, weight_scale: float = 1.0) -> None:
        super().__init__()
        self.dim = dim
        self.max_kernel = max_kernel
        self.weight_scale = weight_scale
        self.value = nn.Linear(2, dim)
        self.row = nn.Embedding(max_kernel, dim)
        self.col = nn.Embedding(max_kernel, dim)
        self.kind = nn.Embedding(2, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.value.reset_parameters()
        for emb in (self.row, self.col, self.kind):
            nn.init.normal_(emb.weight, std=0.5)

    def forward(self, graph: Any, weight: Tensor | None = None) -> Tensor:
        w = (graph.weight if weight is None else weight) / self.weight_scale
        if w.dim() != 1 or w.numel() != graph.edge_index.size(1):
            raise NeuralGraphError(f"EdgeFeatures: weight must be [{graph.edge_index.size(1)}], "
                                   f"got {tuple(w.shape)}")
        pos = graph.edge_pos
        _check_range("EdgeFeatures", pos[:, 3:], self.max_kernel, "kernel/spatial position")
        w = w.to(self.value.weight.dtype).unsqueeze(-1)
        return (self.value(torch.cat([w, w * w], -1)) + self.row(pos[:, 3]) + self.col(pos[:, 4])
                + self.kind(graph.edge_kind))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.dim}, max_kernel={self.max_kernel})"


class ProbeFeatures(nn.Module):
    r"""Neuron activations on ``P`` learned probe inputs (Kofinas et al., 2024).

    Each network of the batch is run functionally on the probes (from its
    weight vector, :func:`neuralgraph.functional.node_activations`); neuron
    ``v`` gets the vector of its (spatially averaged) activations
    :math:`[h_v(\xi_1), \dots, h_v(\xi_P)]`, projected to ``F`` channels.
    Hidden activations permute with their neurons, so equivariance is kept.

    Args:
        num_probes (int): ``P``.
        input_shape (sequence of int): per-sample input shape of the networks.
        dim (int): output width ``F``.

    Shapes:
        - **input:** a graph (or batch) whose networks take ``input_shape``
        - **output:** ``[|V|, F]``
    """

    def __init__(self, num_probes: int, input_shape: Sequence[int], dim: int) -> None:
        super().__init__()
        self.num_probes = num_probes
        self.input_shape = tuple(int(s) for s in input_shape)
        self.dim = dim
        self.probes = nn.Parameter(torch.empty((num_probes,) + self.input_shape))
        self.proj = nn.Linear(num_probes, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.probes)
        self.proj.reset_parameters()

    def forward(self, graph: Any) -> Tensor:
        from neuralgraph.functional import node_activations

        archs = graph.arch if isinstance(graph.arch, list) else [graph.arch]
        for a in archs:
            if a.input_shape is not None and tuple(a.input_shape) != self.input_shape:
                raise NeuralGraphError(f"ProbeFeatures: network input shape {tuple(a.input_shape)} "
                                       f"!= probe shape {self.input_shape}")
        probes = self.probes.to(graph.weight.dtype)
        acts = torch.stack([node_activations(graph, probes[p:p + 1]) for p in range(self.num_probes)],
                           -1)  # (V, P)
        return self.proj(torch.tanh(acts).to(self.proj.weight.dtype))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.num_probes}, input_shape={self.input_shape}, dim={self.dim})"


class GraphInputs(nn.Module):
    r"""Node and edge embeddings (plus optional probe features) of a graph or batch.

    Args:
        dim (int): embedding width ``F``.
        num_probes (int, optional): ``P`` learned probe inputs; ``0`` disables
            :class:`ProbeFeatures`. (default: ``0``)
        input_shape (sequence of int, optional): network input shape (needed
            for probes).
        weight_scale (float, optional): see :class:`EdgeFeatures`.
        **max_sizes: ``max_inputs``, ``max_outputs``, ``max_layers`` for
            :class:`NodeFeatures` and ``max_kernel`` for :class:`EdgeFeatures`.

    Shapes:
        - **output:** ``(x [|V|, F], e [|E|, F])``
    """

    def __init__(self, dim: int, num_probes: int = 0, input_shape: Sequence[int] | None = None,
                 weight_scale: float = 1.0, max_inputs: int = 16, max_outputs: int = 16,
                 max_layers: int = 16, max_kernel: int = 16) -> None:
        super().__init__()
        self.dim = dim
        self.nodes = NodeFeatures(dim, max_inputs, max_outputs, max_layers)
        self.edges = EdgeFeatures(dim, max_kernel, weight_scale)
        self.probes: ProbeFeatures | None = None
        if num_probes > 0:
            if input_shape is None:
                raise ValueError("GraphInputs: num_probes > 0 needs input_shape")
            self.probes = ProbeFeatures(num_probes, input_shape, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.nodes.reset_parameters()
        self.edges.reset_parameters()
        if self.probes is not None:
            self.probes.reset_parameters()

    def forward(self, graph: Any) -> tuple[Tensor, Tensor]:
        for key in ("edge_index", "weight", "edge_pos", "edge_kind", "node_role", "node_act"):
            if getattr(graph, key, None) is None:
                raise NeuralGraphError(f"encoder input lacks `{key}`: pass a NeuralGraph or a Batch of them")
        x = self.nodes(graph)
        if self.probes is not None:
            x = x + self.probes(graph)
        return x, self.edges(graph)
