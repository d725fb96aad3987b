"""Data parallelism with FSDP2 under ``torchrun``: shard the model, each rank packs its own states.

Outside torchrun (no ``WORLD_SIZE``) everything here is a no-op for a single process. On CPU the
gloo backend is used (tests run two processes that way); on CUDA, NCCL.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1

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
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size())


def shard_model(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """FSDP2: shard every decoder layer, then the root (embeddings, final norm, LM head)."""
    if not info.enabled:
        return model
    from torch.distributed.fsdp import fully_shard

    layers = model.get_decoder().layers
    for layer in layers:
        fully_shard(layer)
    fully_shard(model)
    return model


@contextlib.contextmanager
def unsharded(model: torch.nn.Module, info: DistInfo) -> Iterator[None]:
    """Hold the full parameters on every rank (e.g. while sampling), so each rank can run a
    different number of forward passes without collective calls getting out of step."""
    if not info.enabled:
        yield
        return
    from torch.distributed.fsdp import FSDPModule

    modules = [m for m in model.modules() if isinstance(m, FSDPModule)]
    for module in modules:
        module.unshard()
    try:
        yield
    finally:
        for module in modules:
            module.reshard()


def all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Sum a few numbers over ranks (identity for one process)."""
    if not info.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
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
