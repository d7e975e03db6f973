"""Local rules that update neural graphs (installed as ``neuralgraph.rules``)."""
