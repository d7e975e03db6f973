"""neuralgraph: neural networks as graphs, local rules that grow them, weight-space learning."""

from neuralgraph.architecture import ACTIVATIONS, Architecture, Op
from neuralgraph.convert import load_weight, to_module, to_neural_graph
from neuralgraph.errors import NeuralGraphError, UnsupportedModuleError, WeightShapeError
from neuralgraph.export import to_networkx
from neuralgraph.functional import forward_batch
from neuralgraph.graph import EDGE_KINDS, NODE_ROLES, NeuralGraph, batch_graphs
from neuralgraph.neighbourhood import Neighbourhoods
from neuralgraph.positional import position_code
from neuralgraph.rules.base import step

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "Architecture",
    "EDGE_KINDS",
    "NODE_ROLES",
    "Neighbourhoods",
    "NeuralGraph",
    "NeuralGraphError",
    "Op",
    "UnsupportedModuleError",
    "WeightShapeError",
    "batch_graphs",
    "forward_batch",
    "load_weight",
    "position_code",
    "step",
    "to_module",
    "to_networkx",
    "to_neural_graph",
    "__version__",
]
