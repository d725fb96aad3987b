"""Per-step rewards to advantages: group baselines over the G actions sampled at one state.

SWiRL scores every action on its own (no return over later steps, no value network), so the only
variance reduction is a baseline computed from the other samples of the same state.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch

Baseline = Literal["group_mean", "rloo", "batch_mean", "none"]
AllReduce = Callable[[list[float]], list[float]]  # sums a few numbers over data-parallel ranks


def group_advantages(
    rewards: torch.Tensor,
    group: torch.Tensor,
    *,
    baseline: Baseline = "group_mean",
    scale_by_std: bool = False,
    eps: float = 1e-6,
    all_reduce: AllReduce | None = None,
) -> torch.Tensor:
    """Advantages of actions from their rewards.

    Args:
        rewards: ``[B]`` float, one reward per action (e.g. 1.0 GOOD, 0.0 BAD).
        group: ``[B]`` int64, the state each action was sampled at (ids need not be contiguous).
        baseline: ``group_mean`` (GRPO: r - mean of the group), ``rloo`` (r minus the mean of the
            *other* samples of the group; a group of one gets advantage 0), ``batch_mean`` (r minus
            the mean over all actions: the offline mode, one recorded action per state), ``none``.
        scale_by_std: divide by the group's (or batch's) std + eps, as in GRPO.
        all_reduce: sums over data-parallel ranks, for the batch-level mean and std of
            ``batch_mean`` (a group lies on one rank, so group statistics need none).

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
        moments = [float(rewards.sum()), float(rewards.square().sum()), float(rewards.numel())]
        total, square, count = all_reduce(moments) if all_reduce is not None else moments
        if count == 0:
            return rewards.clone()
        mean = total / count
        centred = rewards - mean
        if not scale_by_std:
            return centred
        return centred / (math.sqrt(max(square / count - mean * mean, 0.0)) + eps)
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


def informative_groups(
    rewards: torch.Tensor,
    group: torch.Tensor,
    *,
    baseline: Baseline,
    all_reduce_max: AllReduce | None = None,
) -> torch.Tensor:
    """``[B]`` bool: whether the baseline group of each action holds different rewards.

    A group whose rewards are all equal gets advantage 0 from a mean or leave-one-out baseline
    (DAPO's "zero-variance" groups): it teaches nothing and only dilutes a token mean. The group
    is the state (``group_mean``, ``rloo``), the whole batch over all ranks (``batch_mean``;
    ``all_reduce_max`` takes the maximum over ranks), or none (``none``: every action counts, its
    advantage is its reward).
    """
    rewards = rewards.to(torch.float32)
    if baseline == "none":
        return torch.ones_like(rewards, dtype=torch.bool)
    if baseline == "batch_mean":
        local = [float(rewards.max()), float(-rewards.min())] if rewards.numel() else [-1e30] * 2
        high, neg_low = all_reduce_max(local) if all_reduce_max is not None else local
        return torch.full_like(rewards, high > -neg_low, dtype=torch.bool)
    _, index = torch.unique(group, return_inverse=True)
    groups = int(index.max()) + 1 if index.numel() else 0
    high = torch.full((groups,), -math.inf).scatter_reduce(0, index, rewards, "amax")
    low = torch.full((groups,), math.inf).scatter_reduce(0, index, rewards, "amin")
    return (high > low)[index]


def penalised_rewards(
    rewards: torch.Tensor,
    sample_of_target: torch.Tensor,
    policy_logp: torch.Tensor,
    ref_logp: torch.Tensor,
    kl_coef: float,
) -> torch.Tensor:
    """``[B]`` rewards with the k1 KL penalty folded in (``kl_in_reward``, as in PPO-style RLHF):
    ``r_b - kl_coef * sum over b's tokens of (log p - log p_ref)``.

    ``sample_of_target`` ``[M]`` int64 names the action (index into ``rewards``) of each target;
    ``policy_logp`` and ``ref_logp`` ``[M]`` are the sampled tokens' log-probs under the policy
    that sampled them and the reference. Trained as a reward, the penalty's expected policy
    gradient is exactly ``-kl_coef`` times the gradient of the sequence-level ``KL(policy || ref)``.
    """
    per_sample = torch.zeros_like(rewards, dtype=torch.float64).index_add_(
        0, sample_of_target, (policy_logp - ref_logp).to(torch.float64)
    )
    return (rewards.to(torch.float64) - kl_coef * per_sample).to(torch.float32)


# Online: GRPO's per-state group mean; offline: one recorded action per state, so the batch mean;
# SFT: every recorded action weighs 1, no baseline.
DEFAULT_BASELINE: dict[str, Baseline] = {
    "online": "group_mean",
    "offline": "batch_mean",
    "sft": "none",
    "outcome": "group_mean",  # the G rollouts of one question
    "stepwise-outcome": "group_mean",
    "trajectory-process": "group_mean",
}


def resolve_baseline(mode: str, baseline: Baseline | None) -> Baseline:
    """``baseline``, or the default of training ``mode`` when it is None."""
    return DEFAULT_BASELINE[mode] if baseline is None else baseline


def degenerate_baseline(mode: str, baseline: Baseline | None, samples_per_state: int) -> str | None:
    """Why ``baseline`` (None: the mode's default) would make every advantage 0 in training
    ``mode`` (online, offline, sft) whatever the rewards, or None when it can learn."""
    baseline = resolve_baseline(mode, baseline)
    if mode == "sft" and baseline != "none":
        return (
            f"{baseline!r} gives SFT zero advantages (every recorded action weighs 1); "
            "use the default (none)"
        )
    if baseline in ("group_mean", "rloo"):
        if mode == "offline":
            return (
                f"{baseline!r} gives zero advantages offline (each recorded state is a group of "
                "one action); use batch_mean (the default) or none"
            )
        if samples_per_state < 2:
            return (
                f"{baseline!r} needs samples_per_state >= 2 (a group of one sample has advantage "
                "0); raise samples_per_state or use batch_mean or none"
            )
    return None
