"""One policy-gradient update over a packed batch, row group by row group.

A packed batch can exceed what one forward pass should hold, so its rows are processed in
micro-batches and the gradients accumulate. Each branch lies within one row, so the loss of the
whole batch is exactly the micro-batch losses weighted by their share of targets ("token"),
branches ("branch") or 1 ("sum"): no approximation from the split.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from swirl.ops import policy_loss, target_logprobs
from swirl.ops.validation import Normalize
from swirl.packed_forward import packed_attention_scope, packed_forward
from swirl.packing import PackedBatch


@dataclass
class UpdateStats:
    """Statistics of one update, averaged over targets (``loss`` is the batch loss)."""

    loss: float
    logp_mean: float
    entropy: float
    kl: float | None
    clip_frac: float | None


def select_rows(batch: PackedBatch, start: int, stop: int) -> PackedBatch:
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
    return PackedBatch(
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


def row_groups(batch: PackedBatch) -> Iterator[PackedBatch]:
    """The batch one row at a time: the packer sizes a row to one micro-batch of tokens."""
    rows = batch.shape[0]
    if rows == 1:
        yield batch
        return
    for start in range(rows):
        yield select_rows(batch, start, start + 1)


def _share(
    part: PackedBatch, whole_targets: int, whole_branches: int, normalize: Normalize
) -> float:
    if normalize == "token":
        return part.num_targets / whole_targets
    if normalize == "branch":
        return len(set(part.target_branch.tolist())) / whole_branches
    return 1.0


class PackedPolicy(torch.nn.Module):
    """A causal LM scored on packed batches: ``forward(part)`` gives the targets' log-probs, or with
    ``loss_options`` the policy loss. The LM head is used inside this forward, so the wrapper can
    be the FSDP root: the root's (embedding / head) parameters are gathered for exactly this call.
    """

    def __init__(self, model: torch.nn.Module, *, autocast: torch.dtype | None = None) -> None:
        """``autocast``: run the decoder under ``torch.autocast`` in this dtype (e.g. bf16) while
        the weights and the optimizer stay fp32; the fused loss accumulates in fp32 anyway."""
        super().__init__()
        self.model = model
        self.autocast = autocast

    def forward(
        self, part: PackedBatch, loss_options: dict | None = None
    ) -> tuple[torch.Tensor, dict[str, float]] | torch.Tensor | None:
        """``[M]`` fp32 log-probs, or ``(loss, stats)``; None when a hidden state is not finite
        (``policy_loss`` refuses non-finite inputs; the caller skips the update)."""
        device_type = next(self.model.parameters()).device.type
        with torch.autocast(
            device_type, dtype=self.autocast or torch.float32, enabled=self.autocast is not None
        ):
            hidden = packed_forward(self.model, part)
        if not bool(torch.isfinite(hidden).all()):
            return None
        head = self.model.get_output_embeddings()
        softcap = getattr(self.model.config, "final_logit_softcapping", None)
        device = hidden.device
        # Under autocast the head runs in the hidden states' dtype too (the cast is differentiable).
        weight = head.weight if head.weight.dtype == hidden.dtype else head.weight.to(hidden.dtype)
        inputs = (
            hidden.reshape(-1, hidden.shape[-1]),
            weight,
            torch.from_numpy(part.target_rows).to(device),
            torch.from_numpy(part.target_ids).to(device, torch.long),
        )
        if loss_options is None:
            return target_logprobs(*inputs, softcap=softcap)
        advantages = torch.from_numpy(part.target_weights).to(device)
        branch = torch.from_numpy(part.target_branch).to(device, torch.long)
        options = {
            key: value.to(device) if isinstance(value, torch.Tensor) else value
            for key, value in loss_options.items()
        }
        return policy_loss(
            *inputs, advantages, branch=branch, softcap=softcap, return_entropy=True, **options
        )


@torch.no_grad()
def packed_logprobs(policy: PackedPolicy, batch: PackedBatch) -> torch.Tensor:
    """``[M]`` fp32 log-probs of every target of ``batch`` (no grad; NaN where not finite)."""
    out = []
    for part in row_groups(batch):
        if part.num_targets == 0:
            continue
        logp = policy(part)
        out.append(torch.full((part.num_targets,), math.nan) if logp is None else logp.cpu())
    return torch.cat(out) if out else torch.zeros(0)


def accumulate_policy_gradient(
    policy: PackedPolicy,
    batch: PackedBatch,
    *,
    normalize: Normalize,
    old_logp: torch.Tensor | None = None,
    ref_logp: torch.Tensor | None = None,
    clip_eps: float | None = None,
    kl_coef: float = 0.0,
    loss_scale: float = 1.0,
) -> UpdateStats:
    """Forward + backward of the policy loss over all rows of ``batch``; gradients accumulate in
    the parameters' ``.grad`` (the caller steps the optimizer).

    ``batch.target_weights`` are the per-target advantages. ``old_logp``/``ref_logp`` are ``[M]``
    in the batch's target order. ``loss_scale`` multiplies the loss before backward (data-parallel
    ranks use it to turn FSDP's gradient average into a global normalisation).
    """
    whole_targets = batch.num_targets
    whole_branches = len(set(batch.target_branch.tolist()))
    totals = {"loss": 0.0, "logp_mean": 0.0, "entropy": 0.0, "kl": 0.0, "clip_frac": 0.0}
    offset = 0
    for part in row_groups(batch):
        count = part.num_targets
        if count == 0:
            continue
        window = slice(offset, offset + count)
        offset += count
        # Forward and backward in one attention scope: checkpointed layers recompute in backward.
        with packed_attention_scope(policy.model):
            result = policy(
                part,
                {
                    "old_logp": None if old_logp is None else old_logp[window],
                    "ref_logp": None if ref_logp is None else ref_logp[window],
                    "clip_eps": clip_eps if old_logp is not None else None,
                    "kl_coef": kl_coef if ref_logp is not None else 0.0,
                    "normalize": normalize,
                },
            )
            if result is None:
                totals["loss"] = math.nan
                continue
            loss, stats = result
            share = _share(part, whole_targets, whole_branches, normalize)
            (loss * share * loss_scale).backward()
        totals["loss"] += loss.item() * share
        fraction = count / whole_targets
        for key in ("logp_mean", "entropy", "kl", "clip_frac"):
            totals[key] += stats.get(key, 0.0) * fraction
    return UpdateStats(
        loss=totals["loss"],
        logp_mean=totals["logp_mean"],
        entropy=totals["entropy"],
        kl=totals["kl"] if ref_logp is not None else None,
        clip_frac=totals["clip_frac"] if (old_logp is not None and clip_eps is not None) else None,
    )
