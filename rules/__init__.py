"""Local rules that update neural graphs (installed as ``neuralgraph.rules``)."""

from neuralgraph.rules.base import Rule, available, get, neighbourhoods, register, step

__all__ = ["Rule", "available", "get", "neighbourhoods", "register", "step"]
