"""Local rules that update neural graphs (installed as ``neuralgraph.rules``)."""

from neuralgraph.rules.base import Rule, available, check_hidden, get, neighbourhoods, register, step
from neuralgraph.rules.mlp_rule import MLPRule
from neuralgraph.rules.weight_transformer import WeightTransformer

__all__ = [
    "MLPRule",
    "WeightTransformer",
    "Rule",
    "available",
    "check_hidden",
    "get",
    "neighbourhoods",
    "register",
    "step",
]
