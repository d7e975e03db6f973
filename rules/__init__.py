"""Local rules that update neural graphs (installed as ``neuralgraph.rules``)."""

from neuralgraph.rules.base import Rule, available, check_hidden, get, neighbourhoods, register, step
from neuralgraph.rules.mlp_rule import MLPRule

__all__ = [
    "MLPRule",
    "Rule",
    "available",
    "check_hidden",
    "get",
    "neighbourhoods",
    "register",
    "step",
]
