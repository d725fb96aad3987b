"""Data parallelism with FSDP2 under ``torchrun``: shard the model, each rank packs its own states.

Outside torchrun (no ``WORLD_SIZE``) everything here is a no-op for a single process. On CPU the
gloo backend is used (tests run two processes that way); on CUDA, NCCL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    owns_group: bool = False  # init_distributed created the process group (and closes it)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the torchrun process group when launched by torchrun; else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), owns_group=owns_group)


def close_distributed(info: DistInfo) -> None:
    """Leave the process group :func:`init_distributed` created, once every rank is done: a rank
    that exits while another still talks to it can abort in gloo's threads ("terminate called
    without an active exception"). A group the caller created is left to the caller."""
    if info.owns_group and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def shard_policy(policy: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """FSDP2: shard every decoder layer of ``policy.model``, then ``policy`` itself as the root
    (embeddings, final norm, LM head), whose forward is the whole packed loss."""
    if not info.enabled:
        return policy
    from torch.distributed.fsdp import fully_shard

    for layer in policy.model.get_decoder().layers:
        fully_shard(layer)
    fully_shard(policy)
    return policy


def all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Sum a few numbers over ranks (identity for one process)."""
    return _all_reduce(values, info, dist.ReduceOp.SUM)


def all_reduce_max(values: list[float], info: DistInfo) -> list[float]:
    """The largest of each number over ranks (identity for one process)."""
    return _all_reduce(values, info, dist.ReduceOp.MAX)


def _all_reduce(values: list[float], info: DistInfo, op: dist.ReduceOp) -> list[float]:
    if not info.enabled:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor, op=op)
    return tensor.tolist()


def full_state_dicts(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, info: DistInfo
) -> tuple[dict, dict]:
    """Unsharded model and optimizer state dicts (on rank 0 in distributed runs; CPU tensors)."""
    if not info.enabled:
        return model.state_dict(), optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return (
        get_model_state_dict(model, options=options),
        get_optimizer_state_dict(model, optimizer, options=options),
    )


def refresh_full_copy(sharded: torch.nn.Module, copy: torch.nn.Module, *, prefix: str = "") -> None:
    """Load the current (gathered) weights of ``sharded`` into the plain module ``copy`` on every
    rank; ``prefix`` is stripped from the sharded module's parameter names."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(sharded, options=StateDictOptions(full_state_dict=True))
    copy.load_state_dict({k.removeprefix(prefix): v for k, v in full.items()})


def load_optimizer_state(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict, info: DistInfo
) -> None:
    """Restore a full (unsharded) optimizer state dict onto possibly sharded parameters."""
    if not info.enabled:
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(
        model, optimizer, optim_state_dict=state, options=StateDictOptions(full_state_dict=True)
    )


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
