r"""Multi-process meta-training with :mod:`torch.distributed` (launched by ``torchrun``).

Data parallelism over the rule: every rank holds the same rule and optimizer,
grows *different* architectures / batches (rank-specific RNG streams), and the
per-rank gradients are averaged with ``all_reduce`` before the identical Adam
step on every rank -- the same update :class:`~torch.nn.parallel.DistributedDataParallel`
performs, done explicitly because one meta-step calls the rule many times under
gradient checkpointing.  CPU runs use the ``gloo`` backend::

    torchrun --nproc_per_node 2 -m neuralgraph meta-train examples/iris.yaml
"""

from __future__ import annotations

import os
from typing import Any, List

import torch
import torch.distributed as dist

__all__ = ["init_from_env", "is_distributed", "rank", "world_size", "all_reduce_mean_", "all_gather_object",
           "broadcast_module", "barrier", "shutdown"]


def init_from_env(backend: str = "gloo") -> bool:
    """Join the process group if launched by ``torchrun`` (``WORLD_SIZE > 1``); return whether distributed."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return True


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def all_reduce_mean_(tensors: List[torch.Tensor]) -> None:
    """Average tensors over ranks, in place (one flat all-reduce)."""
    if not is_distributed() or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world_size()
    off = 0
    for t in tensors:
        t.copy_(flat[off:off + t.numel()].view_as(t))
        off += t.numel()


def all_gather_object(obj: Any) -> List[Any]:
    if not is_distributed():
        return [obj]
    out: List[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_module(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if not is_distributed():
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=0)


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
