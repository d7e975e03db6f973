"""Weight Agnostic Neural Networks (Gaier & Ha, 2019) on neural graphs, batched in torch."""

from neuralgraph.wann.activations import WANN_ACTIVATIONS, activation_code, apply_activation
from neuralgraph.wann.dag import WANNGraph
from neuralgraph.wann.evaluate import PopulationPlan, compile_population, evaluate, run_plan
from neuralgraph.wann.module import WANNModule
from neuralgraph.wann.mutate import MUTATIONS, add_connection, add_node, change_activation, mutate, reenable
from neuralgraph.wann.pareto import crowding_distance, nondominated_fronts, pareto_rank
from neuralgraph.wann.search import DEFAULT_WEIGHTS, WANNConfig, WANNSearch, load_champion
from neuralgraph.wann.tasks import CartPoleSwingUp, CartPoleTask, MNISTTask, load_mnist16, make_task

__all__ = [
    "CartPoleSwingUp",
    "CartPoleTask",
    "DEFAULT_WEIGHTS",
    "MNISTTask",
    "MUTATIONS",
    "PopulationPlan",
    "WANNConfig",
    "WANNGraph",
    "WANNModule",
    "WANN_ACTIVATIONS",
    "WANNSearch",
    "activation_code",
    "add_connection",
    "add_node",
    "apply_activation",
    "change_activation",
    "compile_population",
    "crowding_distance",
    "evaluate",
    "load_champion",
    "load_mnist16",
    "make_task",
    "mutate",
    "nondominated_fronts",
    "pareto_rank",
    "reenable",
    "run_plan",
]
