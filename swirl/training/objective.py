"""One policy-gradient update over a packed batch, row group by row group.

A packed batch can exceed what one forward pass should hold, so its rows are processed in
micro-batches and the gradients accumulate. Each branch lies within one row, so the loss of the
whole batch is exactly the micro-batch losses weighted by their share of targets ("token"),
branches ("branch") or 1 ("sum"): no approximation from the split.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from swirl.ops import policy_loss, target_logprobs
from swirl.packed_forward import packed_forward
from swirl.packing import PackedBatch
from swirl.training.config import Normalize


@dataclass
class UpdateStats:
    """Statistics of one update, averaged over targets (``loss`` is the batch loss)."""

    loss: float
    logp_mean: float
    entropy: float
    kl: float | None
    clip_frac: float | None
    targets: int


def row_groups(batch: PackedBatch, rows_per_group: int) -> Iterator[PackedBatch]:
    """The batch split into consecutive groups of at most ``rows_per_group`` rows."""
    rows = batch.shape[0]
    for start in range(0, rows, rows_per_group):
        yield batch.select_rows(start, min(start + rows_per_group, rows))


def _share(
    part: PackedBatch, whole_targets: int, whole_branches: int, normalize: Normalize
) -> float:
    if normalize == "token":
        return part.num_targets / whole_targets
    if normalize == "branch":
        return len(set(part.target_branch.tolist())) / whole_branches
    return 1.0


def _lm_head(model: torch.nn.Module) -> tuple[torch.Tensor, float | None]:
    """The LM head weight ``[V, D]`` and the final-logit softcap of the model (Gemma 2: 30)."""
    head = model.get_output_embeddings()
    return head.weight, getattr(model.config, "final_logit_softcapping", None)


@torch.no_grad()
def packed_logprobs(
    model: torch.nn.Module, batch: PackedBatch, *, rows_per_group: int, temperature: float = 1.0
) -> torch.Tensor:
    """``[M]`` fp32 log-probs of every target of ``batch`` under ``model`` (no grad)."""
    weight, softcap = _lm_head(model)
    out = []
    for part in row_groups(batch, rows_per_group):
        if part.num_targets == 0:
            continue
        hidden = packed_forward(model, part)
        out.append(
            target_logprobs(
                hidden.reshape(-1, hidden.shape[-1]),
                weight,
                torch.from_numpy(part.target_rows).to(hidden.device),
                torch.from_numpy(part.target_ids).to(hidden.device, torch.long),
                softcap=softcap,
                temperature=temperature,
            )
        )
    return torch.cat(out) if out else torch.zeros(0)


def accumulate_policy_gradient(
    model: torch.nn.Module,
    batch: PackedBatch,
    *,
    rows_per_group: int,
    normalize: Normalize,
    old_logp: torch.Tensor | None = None,
    ref_logp: torch.Tensor | None = None,
    clip_eps: float | None = None,
    kl_coef: float = 0.0,
    temperature: float = 1.0,
    loss_scale: float = 1.0,
) -> UpdateStats:
    """Forward + backward of the policy loss over all rows of ``batch``; gradients accumulate in
    the model's ``.grad`` (the caller steps the optimizer).

    ``batch.target_weights`` are the per-target advantages. ``old_logp``/``ref_logp`` are ``[M]``
    in the batch's target order. ``loss_scale`` multiplies the loss before backward (data-parallel
    ranks use it to turn FSDP's gradient average into a global normalisation).
    """
    weight, softcap = _lm_head(model)
    device = weight.device
    whole_targets = batch.num_targets
    whole_branches = len(set(batch.target_branch.tolist()))
    totals = {"loss": 0.0, "logp_mean": 0.0, "entropy": 0.0, "kl": 0.0, "clip_frac": 0.0}
    offset = 0
    for part in row_groups(batch, rows_per_group):
        count = part.num_targets
        if count == 0:
            continue
        window = slice(offset, offset + count)
        offset += count
        hidden = packed_forward(model, part)
        loss, stats = policy_loss(
            hidden.reshape(-1, hidden.shape[-1]),
            weight,
            torch.from_numpy(part.target_rows).to(device),
            torch.from_numpy(part.target_ids).to(device, torch.long),
            torch.from_numpy(part.target_weights).to(device),
            old_logp=None if old_logp is None else old_logp[window].to(device),
            ref_logp=None if ref_logp is None else ref_logp[window].to(device),
            clip_eps=clip_eps if old_logp is not None else None,
            kl_coef=kl_coef if ref_logp is not None else 0.0,
            normalize=normalize,
            branch=torch.from_numpy(part.target_branch).to(device, torch.long),
            softcap=softcap,
            temperature=temperature,
            return_entropy=True,
        )
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
        targets=whole_targets,
    )
