"""Data loaders and model zoos (installed as ``neuralgraph.datasets``)."""
