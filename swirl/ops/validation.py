"""Argument checks shared by every implementation of the fused ops.

Each failure is a ``ValueError`` whose message starts with the argument's name, so a caller deep
inside a training loop sees which tensor was wrong, not an index error from inside a kernel.
The range and finiteness checks read every element once (one reduction each); next to the
``M x D x V`` matmul they guard they cost nothing measurable.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
IMPLS = ("auto", "reference", "chunked", "triton")
Normalize = Literal["token", "sequence", "sum"]  # how policy_loss reduces over targets
NORMALIZE_MODES = get_args(Normalize)
KL_ESTIMATORS = ("k1", "k2", "k3")


def check_target_inputs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    rows: torch.Tensor,
    targets: torch.Tensor,
    softcap: float | None,
    temperature: float,
    impl: str,
) -> None:
    """Check the arguments of ``target_logprobs``.

    Shapes: hidden [N, D] and weight [V, D] of one floating dtype on one device; rows and targets
    [M] integer tensors with ``0 <= rows < N`` and ``0 <= targets < V``; M >= 1.
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    _check_float_matrix("hidden", hidden)
    _check_float_matrix("weight", weight)
    if weight.dtype != hidden.dtype:
        raise ValueError(f"weight has dtype {weight.dtype} but hidden has {hidden.dtype}")
    if weight.device != hidden.device:
        raise ValueError(f"weight is on {weight.device} but hidden is on {hidden.device}")
    if weight.shape[1] != hidden.shape[1]:
        raise ValueError(
            f"weight has shape {tuple(weight.shape)} [V, D] but hidden has D={hidden.shape[1]}"
        )
    _check_index("rows", rows, hidden.shape[0], "hidden rows", hidden.device)
    _check_index("targets", targets, weight.shape[0], "vocabulary size", hidden.device)
    if rows.shape != targets.shape:
        raise ValueError(
            f"targets has shape {tuple(targets.shape)} but rows has {tuple(rows.shape)}"
        )
    if softcap is not None and not (math.isfinite(softcap) and softcap > 0):
        raise ValueError(f"softcap must be a finite number > 0 or None, got {softcap!r}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    _check_finite("hidden", hidden)
    _check_finite("weight", weight)


def check_loss_inputs(
    num_targets: int,
    device: torch.device,
    advantages: torch.Tensor,
    *,
    old_logp: torch.Tensor | None = None,
    ref_logp: torch.Tensor | None = None,
    behavior_logp: torch.Tensor | None = None,
    clip_low: float | None = None,
    clip_high: float | None = None,
    kl_coef: float = 0.0,
    kl_estimator: str = "k3",
    kl_clamp: float | None = None,
    entropy_coef: float = 0.0,
    tis_cap: float | None = None,
    normalize: str = "token",
    sequence: torch.Tensor | None = None,
    target_scale: torch.Tensor | None = None,
) -> None:
    """Check the arguments that ``policy_loss`` adds on top of ``target_logprobs``.

    advantages, old_logp, ref_logp, behavior_logp and target_scale are finite floating [M]
    tensors; sequence an integer [M] tensor (required by ``normalize="sequence"``).
    """
    vectors = (
        ("advantages", advantages),
        ("old_logp", old_logp),
        ("ref_logp", ref_logp),
        ("behavior_logp", behavior_logp),
        ("target_scale", target_scale),
    )
    for name, value in vectors:
        if value is None:
            continue
        _check_vector(name, value, num_targets, device)
        if not value.is_floating_point():
            raise ValueError(f"{name} must be a floating tensor, got dtype {value.dtype}")
        _check_finite(name, value)
    if normalize not in NORMALIZE_MODES:
        raise ValueError(f"normalize must be one of {NORMALIZE_MODES}, got {normalize!r}")
    if kl_estimator not in KL_ESTIMATORS:
        raise ValueError(f"kl_estimator must be one of {KL_ESTIMATORS}, got {kl_estimator!r}")
    if (clip_low is None) != (clip_high is None):
        raise ValueError("clip_high needs clip_low (the clip range is [1 - low, 1 + high])")
    if clip_low is not None:
        if old_logp is None:
            raise ValueError("clip_low needs old_logp (the ratio it clips is exp(logp - old_logp))")
        if not (math.isfinite(clip_low) and 0 < clip_low < 1):
            raise ValueError(f"clip_low must be in (0, 1), got {clip_low!r}")
        if not (math.isfinite(clip_high) and clip_high > 0):
            raise ValueError(f"clip_high must be a finite number > 0, got {clip_high!r}")
    for name, value in (("kl_coef", kl_coef), ("entropy_coef", entropy_coef)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if kl_coef > 0 and ref_logp is None:
        raise ValueError("kl_coef > 0 needs ref_logp (the reference policy's log-probs)")
    if kl_clamp is not None and not (math.isfinite(kl_clamp) and kl_clamp > 0):
        raise ValueError(f"kl_clamp must be a finite number > 0 or None, got {kl_clamp!r}")
    if tis_cap is not None:
        if behavior_logp is None:
            raise ValueError("tis_cap needs behavior_logp (the sampler's log-probs)")
        if not (math.isfinite(tis_cap) and tis_cap > 0):
            raise ValueError(f"tis_cap must be a finite number > 0, got {tis_cap!r}")
    if normalize == "sequence" and sequence is None:
        raise ValueError('sequence is required when normalize="sequence"')
    if sequence is not None:
        _check_vector("sequence", sequence, num_targets, device)
        if sequence.is_floating_point() or sequence.is_complex() or sequence.dtype == torch.bool:
            raise ValueError(f"sequence must be an integer tensor, got dtype {sequence.dtype}")


def _check_float_matrix(name: str, value: torch.Tensor) -> None:
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() != 2:
        raise ValueError(f"{name} must be 2-D, got shape {tuple(value.shape)}")
    if value.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name} must be float32, float16, bfloat16 or float64, got {value.dtype}")
    if value.shape[0] == 0 or value.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(value.shape)}")


def _check_vector(name: str, value: torch.Tensor, length: int, device: torch.device) -> None:
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},), got {tuple(value.shape)}")
    if value.device != device:
        raise ValueError(f"{name} is on {value.device} but hidden is on {device}")


def _check_index(
    name: str, value: torch.Tensor, bound: int, bound_name: str, device: torch.device
) -> None:
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(value.shape)}")
    if value.numel() == 0:
        raise ValueError(f"{name} is empty: there is nothing to score")
    if value.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise ValueError(f"{name} must be an integer tensor, got dtype {value.dtype}")
    if value.device != device:
        raise ValueError(f"{name} is on {value.device} but hidden is on {device}")
    low, high = (int(v) for v in value.aminmax())
    if low < 0 or high >= bound:
        bad = low if low < 0 else high
        raise ValueError(f"{name} holds {bad}, outside [0, {bound}) (the {bound_name})")


def _check_finite(name: str, value: torch.Tensor) -> None:
    # One reduction, no [V, D] bool buffer: NaN and inf carry through to the min or max.
    # Detached: a check reads values only, and converting a tensor that requires grad to a
    # Python float makes torch warn (hidden and weight require grad in every training step).
    low, high = value.detach().aminmax()
    if not (math.isfinite(float(low)) and math.isfinite(float(high))):
        count = int((~torch.isfinite(value)).sum())
        raise ValueError(f"{name} holds {count} non-finite value(s) (nan or inf)")
