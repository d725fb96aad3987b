"""Fused loss ops of SWiRL Stage 2: per-target log-probs and the policy-gradient loss.

``target_logprobs`` scores (hidden row, target token) pairs under the LM head and ``policy_loss``
turns them into REINFORCE / PPO-clip / KL-penalised losses, both without the ``[tokens, vocab]``
logits: ``impl="chunked"`` (torch tiles, the CPU default) or ``impl="triton"`` (Triton kernels in
``swirl.kernels.target_logprobs``, the CUDA default) against ``impl="reference"`` (full logits).
"""

from swirl.ops.logprobs import resolve_impl, target_logprobs, triton_available
from swirl.ops.loss import normalization_weights, policy_loss, reduce_targets
from swirl.ops.validation import IMPLS, NORMALIZE_MODES

__all__ = [
    "IMPLS",
    "NORMALIZE_MODES",
    "normalization_weights",
    "policy_loss",
    "reduce_targets",
    "resolve_impl",
    "target_logprobs",
    "triton_available",
]
