r"""Weight-space encoders: networks that take whole neural graphs as input.

Design decision: the encoders live in ``neuralgraph.nn`` and not in
``neuralgraph.rules`` because they are *graph-level models over whole
networks* (a network in, one prediction per network out: accuracy,
class of an INR, ...), not *local rules* that map a graph to per-edge updates
``(dw, dh)`` and are applied repeatedly with :func:`neuralgraph.step`.  They
share the input conventions of rules (features straight from
:func:`~neuralgraph.to_neural_graph`, PyG ``Batch`` for many networks) and the
same symmetry guarantee: outputs are invariant to permutations of hidden
neurons.

* :class:`NGGNN`: PNA message passing with edge updates (NG-GNN).
* :class:`NGTransformer`: relational transformer over neurons (NG-T).
* :mod:`~neuralgraph.nn.features`: node / edge / probe input features.
* :class:`GraphReadout`: pooling + MLP.
* :mod:`~neuralgraph.nn.predict`: generalization prediction on a model zoo
  (NG-GNN, NG-T and the StatNN baseline).
"""

from neuralgraph.nn.features import EdgeFeatures, GraphInputs, NodeFeatures, ProbeFeatures, node_batch
from neuralgraph.nn.ng_gnn import NGGNN, PNAEdgeConv, log_degree_delta
from neuralgraph.nn.ng_transformer import NGTransformer, RelationalAttention
from neuralgraph.nn.readout import GraphReadout

__all__ = [
    "EdgeFeatures",
    "GraphInputs",
    "GraphReadout",
    "NGGNN",
    "NGTransformer",
    "NodeFeatures",
    "PNAEdgeConv",
    "ProbeFeatures",
    "RelationalAttention",
    "log_degree_delta",
    "node_batch",
]
