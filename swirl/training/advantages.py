"""Per-step rewards to advantages: group baselines over the G actions sampled at one state.

SWiRL scores every action on its own (no return over later steps, no value network), so the only
variance reduction is a baseline computed from the other samples of the same state.
"""

from __future__ import annotations

from typing import Literal

import torch

Baseline = Literal["group_mean", "rloo", "batch_mean", "none"]


def group_advantages(
    rewards: torch.Tensor,
    group: torch.Tensor,
    *,
    baseline: Baseline = "group_mean",
    scale_by_std: bool = False,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Advantages of actions from their rewards.

    Args:
        rewards: ``[B]`` float, one reward per action (e.g. 1.0 GOOD, 0.0 BAD).
        group: ``[B]`` int64, the state each action was sampled at (ids need not be contiguous).
        baseline: ``group_mean`` (GRPO: r - mean of the group), ``rloo`` (r minus the mean of the
            *other* samples of the group; a group of one gets advantage 0), ``batch_mean`` (r minus
            the mean over all actions: the offline mode, one recorded action per state), ``none``.
        scale_by_std: divide by the group's (or batch's) std + eps, as in GRPO.

    Returns:
        ``[B]`` float32 advantages. A group whose rewards are all equal gets zeros (nothing to learn).
    """
    rewards = rewards.to(torch.float32)
    if rewards.ndim != 1 or group.shape != rewards.shape:
        raise ValueError(
            f"rewards and group must be [B] of equal shape, got {rewards.shape}, {group.shape}"
        )
    if baseline == "none":
        return rewards.clone()
    if baseline == "batch_mean":
        centred = rewards - rewards.mean()
        return centred / (rewards.std(unbiased=False) + eps) if scale_by_std else centred
    _, index = torch.unique(group, return_inverse=True)
    groups = int(index.max()) + 1 if index.numel() else 0
    count = torch.zeros(groups).index_add_(0, index, torch.ones_like(rewards))
    total = torch.zeros(groups).index_add_(0, index, rewards)
    mean = total / count
    if baseline == "group_mean":
        centred = rewards - mean[index]
    elif baseline == "rloo":
        others = (count[index] - 1).clamp(min=1)
        centred = torch.where(
            count[index] > 1, rewards - (total[index] - rewards) / others, torch.zeros_like(rewards)
        )
    else:
        raise ValueError(
            f"baseline must be one of group_mean, rloo, batch_mean, none; got {baseline!r}"
        )
    if scale_by_std:
        square = torch.zeros(groups).index_add_(0, index, (rewards - mean[index]) ** 2)
        std = (square / count).sqrt()
        centred = centred / (std[index] + eps)
    return centred
