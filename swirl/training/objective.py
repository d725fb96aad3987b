"""One policy-gradient update over a packed batch, micro-batch by micro-batch.

A packed batch can exceed what one forward pass should hold, so its rows are processed one at a
time (the packer sizes a row to one micro-batch) and the gradients accumulate. Every target gets
its final loss weight once, from the whole batch's totals over all data-parallel ranks
(:func:`target_loss_scale`), so a micro-batch's loss is a plain weighted sum and micro-batches
and ranks only add up: no approximation from the split.

FSDP all-gathers parameters on every forward (and reduce-scatters the gradients once, after the
last backward), so every rank must run the same number of passes: :func:`pad_passes` fills a
rank's rows up with one-token passes whose single target weighs 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from swirl.ops import policy_loss, target_logprobs
from swirl.packed_forward import packed_attention_scope, packed_forward
from swirl.packing import PackedBatch
from swirl.training.config import Aggregation


@dataclass(frozen=True)
class MicroBatch:
    """One forward (and backward) pass of an update.

    ``part``: the packed rows of this pass; ``indices``: ``[m]`` int64 positions of its targets in
    the whole batch's target order (empty for a padding pass, whose one target is a placeholder).
    """

    part: PackedBatch
    indices: np.ndarray

    @property
    def is_padding(self) -> bool:
        return self.indices.size == 0


@dataclass
class UpdateStats:
    """Sums over one update's real targets (divide by ``targets`` for means; the ``*_pos`` /
    ``*_neg`` clip counts by ``targets_pos`` / ``targets_neg``, the targets with positive /
    negative advantage); ``loss`` is this rank's part of the batch loss times the world size
    (see :func:`target_loss_scale`). ``finite`` is False when a hidden state or the loss was not
    finite."""

    loss: float = 0.0
    targets: int = 0
    logp: float = 0.0
    entropy: float = 0.0
    kl: float = 0.0
    ratio: float = 0.0
    clipped: float = 0.0
    clipped_pos: float = 0.0
    clipped_neg: float = 0.0
    targets_pos: int = 0
    targets_neg: int = 0
    sampler_gap: float = 0.0
    sampler_abs_gap: float = 0.0
    tis_capped: float = 0.0
    finite: bool = True


def select_rows(batch: PackedBatch, start: int, stop: int) -> MicroBatch:
    """Rows ``[start, stop)`` of ``batch`` as a batch of their own, trimmed to their longest row.

    Targets keep their order and global branch ids; ``target_rows`` are re-based to the new
    ``[stop - start, L']`` layout. A branch never spans rows, so no branch is cut.
    """
    rows, length = batch.shape
    if not 0 <= start < stop <= rows:
        raise ValueError(f"row range [{start}, {stop}) is outside the batch's {rows} rows")
    width = int(batch.row_lengths[start:stop].max())
    row, column = np.divmod(batch.target_rows, length)
    keep = (row >= start) & (row < stop)
    lengths = batch.row_lengths[start:stop]
    part = PackedBatch(
        input_ids=batch.input_ids[start:stop, :width],
        position_ids=batch.position_ids[start:stop, :width],
        parent=batch.parent[start:stop, :width],
        subtree_end=batch.subtree_end[start:stop, :width],
        row_lengths=lengths,
        target_rows=(row[keep] - start) * width + column[keep],
        target_ids=batch.target_ids[keep],
        target_weights=batch.target_weights[keep],
        target_branch=batch.target_branch[keep],
        num_branches=batch.num_branches,
        naive_tokens=int(lengths.sum()),  # per-branch prefixes are not tracked per row
        packed_tokens=int(lengths.sum()),
    )
    return MicroBatch(part, np.flatnonzero(keep))


def padding_pass(pad_id: int) -> MicroBatch:
    """A one-token pass with one placeholder target: it runs the model (and so FSDP's collectives)
    and contributes exactly 0 to the loss and the gradients."""

    def one(value: int, dtype: type) -> np.ndarray:
        return np.array([[value]], dtype=dtype)

    part = PackedBatch(
        input_ids=one(pad_id, np.int32),
        position_ids=one(0, np.int32),
        parent=one(-1, np.int32),
        subtree_end=one(1, np.int32),
        row_lengths=np.array([1], dtype=np.int32),
        target_rows=np.array([0], dtype=np.int64),
        target_ids=np.array([pad_id], dtype=np.int32),
        target_weights=np.zeros(1, dtype=np.float32),
        target_branch=np.zeros(1, dtype=np.int32),
        num_branches=1,
        naive_tokens=1,
        packed_tokens=1,
    )
    return MicroBatch(part, np.zeros(0, dtype=np.int64))


def row_passes(batch: PackedBatch) -> list[MicroBatch]:
    """One pass per row of ``batch`` that holds targets (the packer sizes a row to a micro-batch)."""
    if not batch.num_targets:
        return []
    passes = (select_rows(batch, row, row + 1) for row in range(batch.shape[0]))
    return [p for p in passes if not p.is_padding]


def pad_passes(passes: list[MicroBatch], count: int, *, pad_id: int) -> list[MicroBatch]:
    """``passes`` followed by padding passes up to ``count``, the most passes any data-parallel
    rank needs."""
    if len(passes) > count:
        raise ValueError(f"{len(passes)} passes do not fit in {count}")
    return passes + [padding_pass(pad_id) for _ in range(count - len(passes))]


def target_loss_scale(
    sequence_lengths: torch.Tensor,
    normalize: Aggregation,
    *,
    total_targets: float,
    total_sequences: float,
    divisor: float,
    world_size: int,
) -> torch.Tensor:
    """``[M]`` float32 final loss weight of every target of this rank's batch.

    ``sequence_lengths`` ``[M]``: the token count of the sequence (sampled action, or whole
    trajectory in outcome mode) each target belongs to. ``token``: ``1 / total_targets``;
    ``sequence``: ``1 / (length * total_sequences)``; ``constant``: ``1 / divisor``. The totals
    are over all ranks (and include counted samples that were not packed), so the sum of
    ``weight * loss term`` over all ranks is the batch loss; it is multiplied by ``world_size``
    because FSDP averages the ranks' gradients instead of adding them.
    """
    count = sequence_lengths.shape[0]
    if normalize == "token":
        weights = torch.full((count,), 1.0 / total_targets)
    elif normalize == "sequence":
        weights = 1.0 / (sequence_lengths.to(torch.float32) * total_sequences)
    elif normalize == "constant":
        weights = torch.full((count,), 1.0 / divisor)
    else:
        raise ValueError(f"normalize must be token, sequence or constant, got {normalize!r}")
    return weights * world_size


class PackedPolicy(torch.nn.Module):
    """A causal LM scored on packed batches: ``forward(part)`` gives the targets' log-probs, or with
    ``loss_options`` the policy loss. The LM head is used inside this forward, so the wrapper can
    be the FSDP root: the root's (embedding / head) parameters are gathered for exactly this call.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        autocast: torch.dtype | None = None,
        temperature: float = 1.0,
    ) -> None:
        """``autocast``: run the decoder under ``torch.autocast`` in this dtype (e.g. bf16) while
        the weights and the optimizer stay fp32; the fused loss accumulates in fp32 anyway.
        ``temperature``: the logits are divided by it, as the sampler divides them, so log-probs,
        ratios, KL and entropy are those of the distribution the actions were drawn from."""
        super().__init__()
        self.model = model
        self.autocast = autocast
        self.temperature = temperature

    def forward(
        self, part: PackedBatch, loss_options: dict | None = None
    ) -> tuple[torch.Tensor, dict[str, float] | None] | torch.Tensor | None:
        """``[M]`` fp32 log-probs (None when a hidden state is not finite), or with
        ``loss_options`` (the keyword arguments of ``policy_loss`` from ``advantages`` on,
        ``[M]`` tensors for this part's targets) ``(loss, stats)``.

        With a non-finite hidden state the loss is ``0 * (hidden.sum() + head.sum())`` and stats
        are None: the caller still runs its backward, so every rank reduces the same gradients
        (the update is then skipped everywhere)."""
        device_type = next(self.model.parameters()).device.type
        with torch.autocast(
            device_type, dtype=self.autocast or torch.float32, enabled=self.autocast is not None
        ):
            hidden = packed_forward(self.model, part)
        head = self.model.get_output_embeddings()
        # Under autocast the head runs in the hidden states' dtype too (the cast is differentiable).
        weight = head.weight if head.weight.dtype == hidden.dtype else head.weight.to(hidden.dtype)
        if not bool(torch.isfinite(hidden).all()):
            if loss_options is None:
                return None
            return (hidden.float().sum() + weight.float().sum()) * 0.0, None
        softcap = getattr(self.model.config, "final_logit_softcapping", None)
        device = hidden.device
        inputs = (
            hidden.reshape(-1, hidden.shape[-1]),
            weight,
            torch.from_numpy(part.target_rows).to(device),
            torch.from_numpy(part.target_ids).to(device, torch.long),
        )
        if loss_options is None:
            return target_logprobs(*inputs, softcap=softcap, temperature=self.temperature)
        options = {
            key: value.to(device) if isinstance(value, torch.Tensor) else value
            for key, value in loss_options.items()
        }
        return policy_loss(
            *inputs,
            softcap=softcap,
            temperature=self.temperature,
            normalize="sum",
            return_entropy=True,
            **options,
        )


@torch.no_grad()
def packed_logprobs(policy: PackedPolicy, passes: Sequence[MicroBatch]) -> torch.Tensor:
    """``[M]`` fp32 log-probs of every target of the batch ``passes`` cover, in the batch's target
    order (no grad; NaN where a hidden state was not finite). Runs every pass, padding included."""
    total = sum(p.indices.size for p in passes)
    out = torch.full((total,), torch.nan)
    for micro in passes:
        logp = policy(micro.part)
        if not micro.is_padding and logp is not None:
            out[torch.from_numpy(micro.indices)] = logp.float().cpu()
    return out


def accumulate_policy_gradient(
    policy: PackedPolicy,
    passes: Sequence[MicroBatch],
    target_scale: torch.Tensor,
    advantages: torch.Tensor,
    *,
    old_logp: torch.Tensor | None = None,
    ref_logp: torch.Tensor | None = None,
    behavior_logp: torch.Tensor | None = None,
    options: dict | None = None,
) -> UpdateStats:
    """Forward + backward of the policy loss over every pass (padding included); gradients
    accumulate in the parameters' ``.grad`` (the caller steps the optimizer). Under FSDP the
    gradients are reduced across ranks once, after the last pass.

    ``target_scale`` (:func:`target_loss_scale`), ``advantages``, ``old_logp``, ``ref_logp`` and
    ``behavior_logp`` are ``[M]`` in the batch's target order (:func:`packed_logprobs`);
    ``options`` are ``policy_loss``'s scalar options (clip, KL, entropy, TIS). A clip needs
    ``old_logp`` and a KL penalty ``ref_logp``: without them they are left out.
    """
    options = dict(options or {})
    if old_logp is None:
        options.update(clip_low=None, clip_high=None)
    if ref_logp is None:
        options["kl_coef"] = 0.0
    if behavior_logp is None:
        options["tis_cap"] = None
    sync = getattr(policy, "set_requires_gradient_sync", None)  # an FSDP2 module
    totals = UpdateStats()
    for index, micro in enumerate(passes):
        if sync is not None:
            sync(index == len(passes) - 1)
        part_advantages = _take(advantages, micro)
        # Forward and backward in one attention scope: checkpointed layers recompute in backward.
        with packed_attention_scope(policy.model):
            loss, stats = policy(
                micro.part,
                {
                    "advantages": part_advantages,
                    "target_scale": _take(target_scale, micro),
                    "old_logp": _take(old_logp, micro),
                    "ref_logp": _take(ref_logp, micro),
                    "behavior_logp": _take(behavior_logp, micro),
                    **options,
                },
            )
            loss.backward()
        if stats is None:
            totals.finite = False
            continue
        totals.loss += loss.item()
        if micro.is_padding:
            continue
        count = micro.indices.size
        positive, negative = int((part_advantages > 0).sum()), int((part_advantages < 0).sum())
        totals.targets += count
        totals.targets_pos += positive
        totals.targets_neg += negative
        totals.logp += stats["logp_mean"] * count
        totals.entropy += stats["entropy"] * count
        totals.kl += stats.get("kl", 0.0) * count
        totals.ratio += stats.get("ratio_mean", 0.0) * count
        totals.clipped += stats.get("clip_frac", 0.0) * count
        totals.clipped_pos += stats.get("clip_frac_pos", 0.0) * max(positive, 1)
        totals.clipped_neg += stats.get("clip_frac_neg", 0.0) * max(negative, 1)
        totals.sampler_gap += stats.get("sampler_gap", 0.0) * count
        totals.sampler_abs_gap += stats.get("sampler_abs_gap", 0.0) * count
        totals.tis_capped += stats.get("tis_capped_frac", 0.0) * count
    if not np.isfinite(totals.loss):
        totals.finite = False
    return totals


def _take(values: torch.Tensor | None, micro: MicroBatch) -> torch.Tensor | None:
    """The entries of ``[M]`` ``values`` for the targets of ``micro`` (0 for a padding pass's
    placeholder target)."""
    if values is None:
        return None
    if micro.is_padding:
        return torch.zeros(1)
    return values[torch.from_numpy(micro.indices)]
