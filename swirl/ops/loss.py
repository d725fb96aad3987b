"""``policy_loss``: SWiRL's step-wise policy gradient on (hidden row, target token, advantage) triples.

Per target ``i`` with ``logp_i = target_logprobs(...)[i]`` and advantage ``A_i``:

- REINFORCE: ``pg_i = -A_i * logp_i``;
- with ``old_logp`` (the learner's log-probs before this batch's first update),
  ``r_i = exp(logp_i - old_logp_i)`` and ``pg_i = -r_i * A_i``, clipped PPO-style to
  ``[1 - clip_low, 1 + clip_high]`` (clip-higher when ``clip_high > clip_low``):
  ``pg_i = -min(r_i A_i, clip(r_i) A_i)``;
- with ``behavior_logp`` (the sampler's own log-probs) and ``tis_cap``, truncated importance
  sampling: ``pg_i *= min(exp(old_i - behavior_i), tis_cap)`` (``old_i``: ``old_logp``, else the
  current log-prob, detached), which corrects a sampler that is not exactly the learner;
- with ``ref_logp`` and ``kl_coef > 0``, a KL penalty ``kl_coef * k(logp_i, ref_i)`` (see
  :func:`kl_penalty` for which divergence each estimator's gradient follows);
- with ``entropy_coef > 0``, an entropy bonus ``-entropy_coef * H_i`` (``H_i``: the entropy of the
  whole next-token distribution at target i).

The per-target terms are multiplied by their normalisation weights and summed
(:func:`normalization_weights`): ``"token"`` averages over all targets, ``"sum"`` adds them,
``"sequence"`` averages within each sequence (the ids in ``sequence``: one sampled action, or one
whole trajectory) and then over sequences. When these targets are only part of a larger batch (a
micro-batch, one data-parallel rank's share), the caller computes the weights once from the whole
batch's totals and passes them as ``target_scale`` with ``normalize="sum"``.
"""

from __future__ import annotations

from typing import Literal

import torch

from swirl.ops.logprobs import target_logprobs_unchecked
from swirl.ops.validation import check_loss_inputs, check_target_inputs

KLEstimator = Literal["k1", "k2", "k3"]


def kl_penalty(
    logp: torch.Tensor, ref_logp: torch.Tensor, estimator: KLEstimator, clamp: float | None
) -> torch.Tensor:
    """``[M]`` per-token KL penalty for tokens sampled from the policy; ``d = logp - ref_logp``
    (clamped to ``[-clamp, clamp]`` when given: no gradient flows from a clamped token).

    As loss terms their gradients differ (expectations over ``a ~ policy``):

    - ``k1 = d``: expected gradient 0 (``E[grad log p] = 0``): use ``kl_in_reward`` for k1;
    - ``k2 = d^2 / 2``: ``E[d grad log p]``, exactly the gradient of ``KL(policy || ref)``;
    - ``k3 = exp(-d) + d - 1`` (GRPO's): ``E[(1 - ref/p) grad log p]``, exactly the gradient of
      ``KL(ref || policy)``, the reverse divergence. Its value is an unbiased, non-negative
      estimate of ``KL(policy || ref)``, which is why it is logged as the KL statistic.
    """
    d = logp - ref_logp
    if clamp is not None:
        d = d.clamp(-clamp, clamp)
    if estimator == "k1":
        return d
    if estimator == "k2":
        return 0.5 * d.square()
    return torch.exp(-d) + d - 1.0


def policy_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    rows: torch.Tensor,
    targets: torch.Tensor,
    advantages: torch.Tensor,
    *,
    old_logp: torch.Tensor | None = None,
    ref_logp: torch.Tensor | None = None,
    behavior_logp: torch.Tensor | None = None,
    clip_low: float | None = None,
    clip_high: float | None = None,
    kl_coef: float = 0.0,
    kl_estimator: KLEstimator = "k3",
    kl_clamp: float | None = None,
    entropy_coef: float = 0.0,
    tis_cap: float | None = None,
    normalize: str = "token",
    sequence: torch.Tensor | None = None,
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
            its action's tokens); zero advantages contribute nothing to the policy-gradient term.
        old_logp: [M] the learner's log-probs before the batch's first update; enables the ratio.
        ref_logp: [M] log-probs under a reference policy; enables the KL statistic and penalty.
        behavior_logp: [M] the sampler's log-probs of the targets; enables the sampler/learner
            gap statistics and, with ``tis_cap``, truncated importance sampling.
        clip_low, clip_high: PPO clip range ``[1 - clip_low, 1 + clip_high]`` (needs ``old_logp``;
            ``clip_high`` None: ``clip_low``); None leaves the ratio unclipped.
        kl_coef, kl_estimator, kl_clamp: the KL penalty (``kl_coef > 0`` needs ``ref_logp``);
            see :func:`kl_penalty`.
        entropy_coef: weight of the entropy bonus (subtracted from the loss).
        tis_cap: truncated importance sampling cap (> 0, needs ``behavior_logp``).
        normalize: ``"token"``, ``"sequence"`` (needs ``sequence``) or ``"sum"``.
        sequence: [M] integer id of the sequence each target belongs to.
        target_scale: [M] factor of each target's loss term before the reduction (e.g. the
            whole batch's normalisation weights, with ``normalize="sum"``); None: 1.
        return_entropy: also report the mean softmax entropy in the stats.

    Returns:
        ``(loss, stats)``: a 0-d fp32 tensor to call ``backward()`` on, and floats, all means
        over targets: ``logp_mean`` always; ``ratio_mean`` with ``old_logp``; with a clip
        ``clip_frac`` (targets whose gradient the clip removed) and ``clip_frac_pos`` /
        ``clip_frac_neg`` (the same, as a fraction of the targets with positive / negative
        advantage); ``kl`` (mean k3 value) with ``ref_logp``; ``entropy`` (nats) with
        ``return_entropy`` or an entropy bonus; ``sampler_gap`` (mean ``behavior - logp``),
        ``sampler_abs_gap`` and, with ``tis_cap``, ``tis_capped_frac`` with ``behavior_logp``.
    """
    check_target_inputs(hidden, weight, rows, targets, softcap, temperature, impl)
    clip_high = clip_low if clip_high is None else clip_high
    check_loss_inputs(
        rows.shape[0],
        hidden.device,
        advantages,
        old_logp=old_logp,
        ref_logp=ref_logp,
        behavior_logp=behavior_logp,
        clip_low=clip_low,
        clip_high=clip_high,
        kl_coef=kl_coef,
        kl_estimator=kl_estimator,
        kl_clamp=kl_clamp,
        entropy_coef=entropy_coef,
        tis_cap=tis_cap,
        normalize=normalize,
        sequence=sequence,
        target_scale=target_scale,
    )
    with_entropy = return_entropy or entropy_coef > 0
    result = target_logprobs_unchecked(
        hidden,
        weight,
        rows,
        targets,
        softcap=softcap,
        temperature=temperature,
        return_entropy=with_entropy,
        impl=impl,
    )
    logp, entropy = result if with_entropy else (result, None)
    advantages = advantages.to(logp.dtype)
    stats: dict[str, torch.Tensor] = {"logp_mean": logp.detach().mean()}
    if old_logp is None:
        per_target = -advantages * logp
    else:
        ratio = torch.exp(logp - old_logp.to(logp.dtype))
        surrogate = ratio * advantages
        if clip_low is not None:
            assert clip_high is not None
            clipped = ratio.clamp(1.0 - clip_low, 1.0 + clip_high) * advantages
            # Cut exactly where the clipped term wins the minimum (its gradient is zero there).
            cut = (clipped < surrogate).detach().to(logp.dtype)
            stats["clip_frac"] = cut.mean()
            for name, side in (
                ("clip_frac_pos", advantages > 0),
                ("clip_frac_neg", advantages < 0),
            ):
                stats[name] = (cut * side).sum() / side.sum().clamp(min=1)
            surrogate = torch.minimum(surrogate, clipped)
        per_target = -surrogate
        stats["ratio_mean"] = ratio.detach().mean()
    if behavior_logp is not None:
        behavior = behavior_logp.to(logp.dtype)
        gap = behavior - logp.detach()
        stats["sampler_gap"] = gap.mean()
        stats["sampler_abs_gap"] = gap.abs().mean()
        if tis_cap is not None:
            learner = logp.detach() if old_logp is None else old_logp.to(logp.dtype)
            raw = torch.exp(learner - behavior)
            stats["tis_capped_frac"] = (raw > tis_cap).to(logp.dtype).mean()
            per_target = per_target * raw.clamp(max=tis_cap)
    if ref_logp is not None:
        reference = ref_logp.to(logp.dtype)
        stats["kl"] = kl_penalty(logp.detach(), reference, "k3", None).mean()
        if kl_coef > 0:
            per_target = per_target + kl_coef * kl_penalty(logp, reference, kl_estimator, kl_clamp)
    if entropy is not None:
        stats["entropy"] = entropy.detach().mean()
        if entropy_coef > 0:
            per_target = per_target - entropy_coef * entropy
    if target_scale is not None:
        per_target = per_target * target_scale.to(per_target.dtype)
    loss = reduce_targets(per_target, normalize, sequence)
    # one device sync for all statistics
    values = torch.stack(list(stats.values())).tolist()
    return loss, dict(zip(stats, values, strict=True))


def normalization_weights(
    normalize: str,
    sequence: torch.Tensor | None,
    num_targets: int,
    *,
    total_targets: int | None = None,
    total_sequences: int | None = None,
    sequence_lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """``[M]`` float32 factor of each target's loss term in the reduction ``normalize``.

    ``"token"``: ``1 / T``; ``"sum"``: 1; ``"sequence"``: ``1 / (len(s) * S)`` for a target of
    sequence s. ``T`` and ``S`` are ``total_targets`` and ``total_sequences`` when given (the
    whole batch's counts, when these M targets are part of it), else the counts in these targets;
    ``len(s)`` is ``sequence_lengths[i]`` per target when given (a sequence split over several
    micro-batches), else counted in ``sequence``.
    """
    device = sequence.device if sequence is not None else None
    if normalize == "sum":
        return torch.ones(num_targets, device=device)
    if normalize == "token":
        return torch.full((num_targets,), 1.0 / (total_targets or num_targets), device=device)
    if sequence is None:
        raise ValueError('sequence is required when normalize="sequence"')
    _, index = torch.unique(sequence, return_inverse=True)
    counts = torch.bincount(index).to(torch.float32)
    lengths = counts[index] if sequence_lengths is None else sequence_lengths.to(torch.float32)
    return 1.0 / (lengths * (total_sequences or counts.numel()))


def reduce_targets(
    per_target: torch.Tensor, normalize: str, sequence: torch.Tensor | None
) -> torch.Tensor:
    """Reduce [M] per-target losses to a scalar: token mean, sum, or mean of sequence means."""
    weights = normalization_weights(normalize, sequence, per_target.shape[0])
    return (per_target * weights.to(per_target.dtype)).sum()
