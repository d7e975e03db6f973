r"""Graph-level readout: pool neuron features per network, then an MLP."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

__all__ = ["GraphReadout", "mlp"]

_POOLS = ("mean", "sum", "max")


def mlp(dims: Sequence[int], act: type = nn.GELU, last_act: bool = False) -> nn.Sequential:
    """``Linear -> act -> ... -> Linear`` through ``dims``."""
    layers = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2 or last_act:
            layers.append(act())
    return nn.Sequential(*layers)


class GraphReadout(nn.Module):
    r"""Permutation-invariant readout :math:`y_G = \mathrm{MLP}([\mathrm{pool}_1(X_G) \| \dots])`.

    Args:
        in_channels (int): node feature width ``F``.
        out_channels (int): output width per graph.
        pools (sequence of str, optional): any of ``"mean"``, ``"sum"``,
            ``"max"``. (default: ``("mean", "max")``)
        hidden (int, optional): MLP width. (default: ``in_channels``)

    Shapes:
        - **input:** node features ``[|V|, F]``, graph ids ``[|V|]``
        - **output:** ``[num_graphs, out_channels]``
    """

    def __init__(self, in_channels: int, out_channels: int, pools: Sequence[str] = ("mean", "max"),
                 hidden: int | None = None) -> None:
        super().__init__()
        bad = [p for p in pools if p not in _POOLS]
        if bad or not pools:
            raise ValueError(f"GraphReadout: pools must be a non-empty subset of {_POOLS}, got {tuple(pools)}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.pools = tuple(pools)
        self.hidden = hidden or in_channels
        self.norm = nn.LayerNorm(in_channels * len(self.pools))
        self.mlp = mlp([in_channels * len(self.pools), self.hidden, out_channels])
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.norm.reset_parameters()
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                m.reset_parameters()

    def forward(self, x: Tensor, batch: Tensor, num_graphs: int | None = None) -> Tensor:
        size = int(batch.max()) + 1 if num_graphs is None else num_graphs
        pooled = torch.cat([scatter(x, batch, 0, dim_size=size, reduce=p) for p in self.pools], -1)
        return self.mlp(self.norm(pooled))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, pools={self.pools})"
