"""``policy_loss``: SWiRL's step-wise policy gradient on (hidden row, target token, advantage) triples.

Per target ``i`` with ``logp_i = target_logprobs(...)[i]`` and advantage ``A_i``:

- REINFORCE: ``loss_i = -A_i * logp_i``;
- with ``old_logp`` (the sampling policy's log-probs), ``r_i = exp(logp_i - old_logp_i)`` and
  ``loss_i = -r_i * A_i``, clipped PPO-style with ``clip_eps``:
  ``loss_i = -min(r_i A_i, clip(r_i, 1 - eps, 1 + eps) A_i)``;
- with ``ref_logp`` the k3 estimator of KL(policy || reference),
  ``kl_i = exp(ref_i - logp_i) - (ref_i - logp_i) - 1`` (>= 0, unbiased), added as ``kl_coef * kl_i``.

The per-target terms are multiplied by their normalisation weights and summed
(:func:`normalization_weights`): ``"token"`` averages over all targets, ``"sum"`` adds them,
``"branch"`` averages within each branch (one sampled action: the ids in ``branch``) and then over
branches, so long and short actions weigh the same. When these targets are only part of a larger
batch (a micro-batch, one data-parallel rank's share), the caller computes the weights once from
the whole batch's totals and passes them as ``target_scale`` with ``normalize="sum"``.
"""

from __future__ import annotations

import torch

from swirl.ops.logprobs import target_logprobs_unchecked
from swirl.ops.validation import check_loss_inputs, check_target_inputs


def policy_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    rows: torch.Tensor,
    targets: torch.Tensor,
    advantages: torch.Tensor,
    *,
    old_logp: torch.Tensor | None = None,
    ref_logp: torch.Tensor | None = None,
    clip_eps: float | None = None,
    kl_coef: float = 0.0,
    normalize: str = "token",
    branch: torch.Tensor | None = None,
    target_scale: torch.Tensor | None = None,
    softcap: float | None = None,
    temperature: float = 1.0,
    return_entropy: bool = False,
    impl: str = "auto",
) -> tuple[torch.Tensor, dict[str, float]]:
    """The policy-gradient loss of a packed batch and its statistics.

    Args:
        hidden, weight, rows, targets, softcap, temperature, impl: as in ``target_logprobs``
            (hidden [N, D], weight [V, D], rows and targets [M]).
        advantages: [M] per-target advantage (a step's reward, baseline subtracted, repeated over
            its action's tokens); zero advantages contribute nothing.
        old_logp: [M] log-probs under the policy that sampled the actions; enables the ratio.
        ref_logp: [M] log-probs under a reference policy; enables the KL statistic and penalty.
        clip_eps: PPO clip range (needs ``old_logp``); None leaves the ratio unclipped.
        kl_coef: weight of the k3 KL penalty (> 0 needs ``ref_logp``).
        normalize: ``"token"``, ``"branch"`` (needs ``branch``) or ``"sum"``.
        branch: [M] integer id of the branch (sampled action) each target belongs to.
        target_scale: [M] factor of each target's loss term before the reduction (e.g. the
            whole batch's normalisation weights, with ``normalize="sum"``); None: 1.
        return_entropy: also report the mean softmax entropy in the stats.

    Returns:
        ``(loss, stats)``: a 0-d fp32 tensor to call ``backward()`` on, and floats
        ``logp_mean`` always, ``ratio_mean`` with ``old_logp``, ``clip_frac`` (fraction of targets
        whose gradient the clip removed) with ``clip_eps``, ``kl`` (mean k3) with ``ref_logp``,
        ``entropy`` (mean, nats) with ``return_entropy``; all are means over targets.
    """
    check_target_inputs(hidden, weight, rows, targets, softcap, temperature, impl)
    check_loss_inputs(
        rows.shape[0],
        hidden.device,
        advantages,
        old_logp,
        ref_logp,
        clip_eps,
        kl_coef,
        normalize,
        branch,
        target_scale,
    )
    result = target_logprobs_unchecked(
        hidden,
        weight,
        rows,
        targets,
        softcap=softcap,
        temperature=temperature,
        return_entropy=return_entropy,
        impl=impl,
    )
    logp, entropy = result if return_entropy else (result, None)
    advantages = advantages.to(logp.dtype)
    stats: dict[str, torch.Tensor] = {"logp_mean": logp.detach().mean()}
    if old_logp is None:
        per_target = -advantages * logp
    else:
        ratio = torch.exp(logp - old_logp.to(logp.dtype))
        surrogate = ratio * advantages
        if clip_eps is not None:
            clipped = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * advantages
            # Cut exactly where the clipped term wins the minimum (its gradient is zero there).
            cut = (clipped < surrogate).detach()
            stats["clip_frac"] = cut.to(logp.dtype).mean()
            surrogate = torch.minimum(surrogate, clipped)
        per_target = -surrogate
        stats["ratio_mean"] = ratio.detach().mean()
    if ref_logp is not None:
        log_ratio = ref_logp.to(logp.dtype) - logp
        kl = torch.exp(log_ratio) - log_ratio - 1.0
        stats["kl"] = kl.detach().mean()
        if kl_coef > 0:
            per_target = per_target + kl_coef * kl
    if entropy is not None:
        stats["entropy"] = entropy.detach().mean()
    if target_scale is not None:
        per_target = per_target * target_scale.to(per_target.dtype)
    loss = reduce_targets(per_target, normalize, branch)
    # one device sync for all statistics
    values = torch.stack(list(stats.values())).tolist()
    return loss, dict(zip(stats, values, strict=True))


def normalization_weights(
    normalize: str,
    branch: torch.Tensor | None,
    num_targets: int,
    *,
    total_targets: int | None = None,
    total_branches: int | None = None,
) -> torch.Tensor:
    """``[M]`` float32 factor of each target's loss term in the reduction ``normalize``.

    ``"token"``: ``1 / T``; ``"sum"``: 1; ``"branch"``: ``1 / (len(b) * B)`` for a target of branch
    b, with ``len(b)`` counted in ``branch`` (a branch's targets are never split). ``T`` and ``B``
    are ``total_targets`` and ``total_branches`` when given (the whole batch's counts, when these
    M targets are part of it), else the counts in these targets.
    """
    device = branch.device if branch is not None else None
    if normalize == "sum":
        return torch.ones(num_targets, device=device)
    if normalize == "token":
        return torch.full((num_targets,), 1.0 / (total_targets or num_targets), device=device)
    if branch is None:
        raise ValueError('branch is required when normalize="branch"')
    _, branch_index = torch.unique(branch, return_inverse=True)
    counts = torch.bincount(branch_index).to(torch.float32)
    return 1.0 / (counts[branch_index] * (total_branches or counts.numel()))


def reduce_targets(
    per_target: torch.Tensor, normalize: str, branch: torch.Tensor | None
) -> torch.Tensor:
    """Reduce [M] per-target losses to a scalar: token mean, sum, or mean of branch means."""
    weights = normalization_weights(normalize, branch, per_target.shape[0])
    return (per_target * weights.to(per_target.dtype)).sum()
