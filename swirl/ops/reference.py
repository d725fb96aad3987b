"""The ground truth of the fused ops: plain torch that materialises every logit.

The logits are computed the way a model head computes them, ``hidden @ weight.T`` in the inputs'
own dtype (a bf16 model produces bf16 logits), then upcast for the soft-cap, temperature and
log-softmax in at least float32. That makes this the baseline the fused paths must match within
twice its own same-dtype error; in float32 and float64 it is exact up to summation order.

Memory: ``[M, V]`` logits plus a few same-sized autograd buffers (several GB at a real vocabulary),
which is exactly what the chunked and Triton paths avoid.
"""

from __future__ import annotations

import torch


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the log-softmax runs in: float64 stays float64, anything narrower is float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def target_logprobs_reference(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    rows: torch.Tensor,
    targets: torch.Tensor,
    *,
    softcap: float | None = None,
    temperature: float = 1.0,
    return_entropy: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``log p(targets[i] | hidden[rows[i]])`` under the LM head ``weight``, by full logits.

    Args:
        hidden: [N, D] hidden states (the last layer's output, after the final norm).
        weight: [V, D] LM-head weight.
        rows: [M] integer indices into ``hidden``; several targets may share a row.
        targets: [M] integer token ids in ``[0, V)``.
        softcap: ``c`` of the soft-cap ``c * tanh(z / c)`` applied to the raw logits, or None.
        temperature: the (soft-capped) logits are divided by it before the softmax.
        return_entropy: also return the entropy (nats) of each target's distribution.

    Returns:
        logp [M] in float32 (float64 for float64 inputs), differentiable w.r.t. hidden and weight;
        with ``return_entropy`` a tuple ``(logp, entropy)``, both [M].
    """
    logits = (hidden[rows] @ weight.T).to(compute_dtype(hidden.dtype))
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    if temperature != 1.0:
        logits = logits / temperature
    log_probs = torch.log_softmax(logits, dim=-1)
    logp = log_probs.gather(1, targets.long()[:, None]).squeeze(1)
    if not return_entropy:
        return logp
    entropy = -(log_probs.exp() * log_probs).sum(dim=-1)
    return logp, entropy
