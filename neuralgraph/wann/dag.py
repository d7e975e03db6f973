r"""Weight agnostic neural graphs: arbitrary DAGs with per-node activations and one shared weight."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Union

import networkx as nx
import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data

from neuralgraph.errors import NeuralGraphError
from neuralgraph.graph import NODE_ROLES
from neuralgraph.wann.activations import WANN_ACTIVATIONS, activation_code

if TYPE_CHECKING:  # pragma: no cover
    from neuralgraph.wann.module import WANNModule

__all__ = ["WANNGraph", "INPUT", "HIDDEN", "OUTPUT", "BIAS"]

INPUT, HIDDEN, OUTPUT, BIAS = (NODE_ROLES.index(r) for r in ("input", "hidden", "output", "bias"))


class WANNGraph(Data):
    r"""A weight agnostic network (`Gaier & Ha, 2019 <https://arxiv.org/abs/1906.04358>`_) as a neural graph.

    A directed acyclic graph of neurons.  Every *enabled* edge carries the same
    shared weight :math:`w`, and every node its own activation
    :math:`f_v` (see :data:`~neuralgraph.wann.WANN_ACTIVATIONS`):

    .. math::
        h_v = f_v\Big(w \sum_{u \to v \text{ enabled}} h_u\Big),

    with :math:`h` of an input node its input feature and of the bias node 1.
    Disabled edges stay in the genome (they can be re-enabled by mutation) but
    do not compute.  Nodes are laid out as
    ``[inputs (I) | bias (1) | outputs (O) | hidden]``; roles use the
    :data:`neuralgraph.NODE_ROLES` codes.  Node order need not be
    topological: the evaluators sort nodes by depth.

    Attributes:
        edge_index (LongTensor): ``[2, |E|]`` source -> target neuron.
        edge_enabled (BoolTensor): ``[|E|]`` whether the edge computes.
        node_act (LongTensor): ``[|V|]`` activation code.
        node_role (LongTensor): ``[|V|]`` role code (0 input, 1 hidden, 2 output, 3 bias).

    Shapes:
        - **forward input:** ``[B, I]``, **output:** ``[B, O]``
    """

    # --- construction ----------------------------------------------------------------
    @classmethod
    def from_arrays(cls, edge_index: Any, edge_enabled: Any, node_act: Any, node_role: Any) -> "WANNGraph":
        """Build from array-likes (numpy or torch) without copying torch tensors."""
        return cls(edge_index=torch.as_tensor(np.asarray(edge_index, dtype=np.int64).reshape(2, -1)),
                   edge_enabled=torch.as_tensor(np.asarray(edge_enabled, dtype=bool)),
                   node_act=torch.as_tensor(np.asarray(node_act, dtype=np.int64)),
                   node_role=torch.as_tensor(np.asarray(node_role, dtype=np.int64)),
                   num_nodes=int(len(node_act)))

    @classmethod
    def minimal(cls, num_inputs: int, num_outputs: int, p_enable: float = 1.0,
                output_act: Union[str, int] = "linear",
                rng: Optional[np.random.Generator] = None) -> "WANNGraph":
        """A minimal topology: every (input or bias) -> output edge, each enabled with ``p_enable``.

        At least one edge is enabled.

        Args:
            num_inputs (int): number of input features ``I``.
            num_outputs (int): number of outputs ``O``.
            p_enable (float, optional): probability that an edge starts enabled. (default: ``1.0``)
            output_act (str or int, optional): activation of the output nodes. (default: ``"linear"``)
            rng (numpy.random.Generator, optional): random source.
        """
        if num_inputs < 1 or num_outputs < 1:
            raise ValueError(f"WANNGraph.minimal needs >= 1 input and output, got {num_inputs}, {num_outputs}")
        rng = np.random.default_rng() if rng is None else rng
        act = activation_code(output_act) if isinstance(output_act, str) else int(output_act)
        n_src = num_inputs + 1
        src = np.repeat(np.arange(n_src), num_outputs)
        dst = np.tile(np.arange(n_src, n_src + num_outputs), n_src)
        enabled = rng.random(src.size) < p_enable
        if not enabled.any():
            enabled[rng.integers(src.size)] = True
        role = np.concatenate([np.full(num_inputs, INPUT), [BIAS], np.full(num_outputs, OUTPUT)])
        node_act = np.zeros(n_src + num_outputs, dtype=np.int64)
        node_act[n_src:] = act
        return cls.from_arrays(np.stack([src, dst]), enabled, node_act, role)

    # --- views -----------------------------------------------------------------------
    @property
    def num_inputs(self) -> int:
        return int((self.node_role == INPUT).sum())

    @property
    def num_outputs(self) -> int:
        return int((self.node_role == OUTPUT).sum())

    @property
    def num_hidden(self) -> int:
        return int((self.node_role == HIDDEN).sum())

    @property
    def num_connections(self) -> int:
        """Number of enabled edges (the complexity objective)."""
        return int(self.edge_enabled.sum())

    def depth(self, enabled_only: bool = False) -> np.ndarray:
        """Longest-path depth of every node (inputs and bias 0, others >= 1).

        Raises:
            NeuralGraphError: if the edges contain a cycle.
        """
        role = self.node_role.numpy()
        ei = self.edge_index.numpy()
        if enabled_only:
            ei = ei[:, self.edge_enabled.numpy()]
        return longest_path_depth(ei, (role == HIDDEN) | (role == OUTPUT))

    def is_acyclic(self) -> bool:
        try:
            self.depth()
        except NeuralGraphError:
            return False
        return True

    # --- checks ----------------------------------------------------------------------
    def validate(self, raise_on_error: bool = True) -> bool:
        """Check shapes, the node layout, activation codes and acyclicity."""
        errors: List[str] = []
        n = self.num_nodes
        ei, en = self.edge_index, getattr(self, "edge_enabled", None)
        if ei is None or ei.dim() != 2 or ei.size(0) != 2:
            errors.append(f"edge_index must be [2, E], got {None if ei is None else tuple(ei.shape)}")
        else:
            if ei.numel() and (int(ei.min()) < 0 or int(ei.max()) >= n):
                errors.append(f"edge_index values must lie in [0, {n}), got [{int(ei.min())}, {int(ei.max())}]")
            if en is None or tuple(en.shape) != (ei.size(1),) or en.dtype != torch.bool:
                errors.append(f"edge_enabled must be a bool tensor of shape ({ei.size(1)},), got "
                              f"{None if en is None else (tuple(en.shape), en.dtype)}")
        for key in ("node_act", "node_role"):
            val = getattr(self, key, None)
            if val is None or tuple(val.shape) != (n,):
                errors.append(f"{key} must have shape ({n},), got {None if val is None else tuple(val.shape)}")
        if not errors:
            act, role = self.node_act, self.node_role
            if act.numel() and (int(act.min()) < 0 or int(act.max()) >= len(WANN_ACTIVATIONS)):
                errors.append(f"node_act codes must lie in [0, {len(WANN_ACTIVATIONS)}), got "
                              f"[{int(act.min())}, {int(act.max())}]")
            i, o = self.num_inputs, self.num_outputs
            layout = torch.cat([torch.full((i,), INPUT), torch.tensor([BIAS]), torch.full((o,), OUTPUT),
                                torch.full((n - i - 1 - o,), HIDDEN)]) if n >= i + 1 + o else None
            if layout is None or not torch.equal(role.cpu(), layout):
                errors.append("nodes must be laid out [inputs | bias | outputs | hidden] with exactly one bias "
                              f"node; got roles {role.tolist()[:20]}{'...' if n > 20 else ''}")
            elif ei.numel():
                r_src, r_dst = role[ei[0]], role[ei[1]]
                if bool(((r_src == OUTPUT)).any()):
                    errors.append("edges must not leave an output node")
                if bool(((r_dst == INPUT) | (r_dst == BIAS)).any()):
                    errors.append("edges must not enter an input or bias node")
                if bool((ei[0] == ei[1]).any()):
                    errors.append("self-loops are not allowed")
                if not errors and not self.is_acyclic():
                    errors.append("edges contain a cycle")
        if errors and raise_on_error:
            raise NeuralGraphError("invalid WANNGraph: " + "; ".join(errors))
        return not errors

    # --- running and export ----------------------------------------------------------
    def forward(self, x: Tensor, weight: Union[float, Sequence[float], Tensor] = 1.0) -> Tensor:
        """Run with one or several shared weight values.

        Returns ``[B, O]`` for a scalar ``weight`` and ``[W, B, O]`` for ``W`` values.
        """
        from neuralgraph.wann.evaluate import evaluate

        w = torch.as_tensor(weight, dtype=x.dtype, device=x.device)
        out = evaluate([self], x, w.reshape(-1))[0]  # (W, B, O)
        return out[0] if w.dim() == 0 else out

    def to_module(self, weight: float = 1.0) -> "WANNModule":
        """An :class:`~neuralgraph.wann.WANNModule` with one trainable weight per enabled edge, all ``weight``."""
        from neuralgraph.wann.module import WANNModule

        return WANNModule(self, weight=weight)

    def to_networkx(self, enabled_only: bool = True) -> nx.DiGraph:
        """A ``networkx.DiGraph``; nodes carry ``role``, ``act`` (names) and ``depth``, edges ``enabled``."""
        g = nx.DiGraph()
        depth = self.depth(enabled_only=True).tolist()
        act, role = self.node_act.tolist(), self.node_role.tolist()
        g.add_nodes_from((v, {"role": NODE_ROLES[role[v]], "act": WANN_ACTIVATIONS[act[v]], "depth": depth[v]})
                         for v in range(self.num_nodes))
        src, dst = self.edge_index.tolist()
        en = self.edge_enabled.tolist()
        g.add_edges_from((s, d, {"enabled": e}) for s, d, e in zip(src, dst, en) if e or not enabled_only)
        return g

    def __repr__(self) -> str:
        if getattr(self, "node_role", None) is None or self.node_role.dim() != 1:
            return super().__repr__()
        return (f"{self.__class__.__name__}(inputs={self.num_inputs}, outputs={self.num_outputs}, "
                f"hidden={self.num_hidden}, connections={self.num_connections}/{self.edge_index.size(1)})")


def longest_path_depth(edge_index: np.ndarray, computed: np.ndarray) -> np.ndarray:
    """Longest-path depth over a DAG: 0 for non-computed nodes (inputs), >= 1 for computed ones.

    Only edges leaving computed nodes can raise a depth above 1, so the
    relaxation runs over those edges only.

    Raises:
        NeuralGraphError: if the edges contain a cycle.
    """
    depth = computed.astype(np.int64)
    src, dst = edge_index
    keep = computed[src]
    src, dst = src[keep], dst[keep]
    if src.size == 0:
        return depth
    for _ in range(int(computed.sum()) + 1):
        new = depth.copy()
        np.maximum.at(new, dst, depth[src] + 1)
        if np.array_equal(new, depth):
            return depth
        depth = new
    raise NeuralGraphError("WANNGraph edges contain a cycle (depth relaxation did not converge)")
