"""Learning-rate schedules: linear warmup, then cosine decay or constant."""

from __future__ import annotations

import math
from typing import Literal

import torch

Schedule = Literal["cosine", "constant"]


def lr_factor(
    step: int, *, total_steps: int, warmup_steps: int, schedule: Schedule, min_factor: float = 0.1
) -> float:
    """Multiplier of the base LR at optimizer step ``step`` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule != "cosine":
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {schedule!r}")
    span = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / span, 1.0)
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(
    optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_steps: int, schedule: Schedule
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_factor(
            step, total_steps=total_steps, warmup_steps=warmup_steps, schedule=schedule
        ),
    )
