"""``target_logprobs``: the public entry point; checks its arguments and picks an implementation."""

from __future__ import annotations

import importlib.util

import torch

from swirl.ops.chunked import target_logprobs_chunked
from swirl.ops.reference import target_logprobs_reference
from swirl.ops.validation import check_target_inputs


def target_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    rows: torch.Tensor,
    targets: torch.Tensor,
    *,
    softcap: float | None = None,
    temperature: float = 1.0,
    return_entropy: bool = False,
    impl: str = "auto",
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of each target token under the LM head, without ``[M, V]`` logits.

    ``logp[i] = log softmax(softcap(hidden[rows[i]] @ weight.T) / temperature)[targets[i]]``,
    where ``softcap(z) = c * tanh(z / c)`` (Gemma 2 uses c = 30) is skipped when ``softcap`` is None.

    Args:
        hidden: [N, D] final hidden states (fp32, fp16, bf16; fp64 for reference/chunked).
        weight: [V, D] LM-head weight, same dtype and device as ``hidden``.
        rows: [M] integer row of ``hidden`` that predicts each target; rows may repeat (the first
            tokens of sibling branches all read their shared prefix's last row).
        targets: [M] integer token ids in ``[0, V)``.
        softcap: soft-cap constant ``c`` or None.
        temperature: divides the (soft-capped) logits; > 0.
        return_entropy: also return each target's softmax entropy (nats), differentiable too.
        impl: ``"reference"`` (materialises logits), ``"chunked"`` (torch tiles, any device),
            ``"triton"`` (CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``) or ``"auto"``
            (triton on CUDA when triton is installed, chunked otherwise).

    Returns:
        logp [M] in fp32 (fp64 for fp64 inputs), differentiable w.r.t. ``hidden`` and ``weight``;
        with ``return_entropy`` the tuple ``(logp, entropy)``.

    Raises:
        ValueError: naming the argument, for bad shapes, dtypes, devices, out-of-range rows or
            targets, non-finite hidden/weight values, or an impl that cannot run here.
    """
    check_target_inputs(hidden, weight, rows, targets, softcap, temperature, impl)
    return target_logprobs_unchecked(
        hidden,
        weight,
        rows,
        targets,
        softcap=softcap,
        temperature=temperature,
        return_entropy=return_entropy,
        impl=impl,
    )


def target_logprobs_unchecked(
    hidden, weight, rows, targets, *, softcap, temperature, return_entropy, impl
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``target_logprobs`` for arguments that ``check_target_inputs`` has already accepted."""
    options = {"softcap": softcap, "temperature": temperature, "return_entropy": return_entropy}
    chosen = resolve_impl(impl, hidden)
    if chosen == "reference":
        return target_logprobs_reference(hidden, weight, rows, targets, **options)
    if chosen == "chunked":
        return target_logprobs_chunked(hidden, weight, rows, targets, **options)
    from swirl.kernels.target_logprobs import target_logprobs_triton

    return target_logprobs_triton(hidden, weight, rows, targets, **options)


def triton_available() -> bool:
    """Whether the ``triton`` package is installed (it is the ``cuda`` extra)."""
    return importlib.util.find_spec("triton") is not None


def resolve_impl(impl: str, hidden: torch.Tensor) -> str:
    """The implementation ``impl`` stands for with this input; ValueError if it cannot run."""
    if impl == "auto":
        usable = hidden.is_cuda and hidden.dtype != torch.float64 and triton_available()
        return "triton" if usable else "chunked"
    if impl != "triton":
        return impl
    if not triton_available():
        raise ValueError("impl='triton' needs the triton package: pip install 'swirl[cuda]'")
    if hidden.dtype == torch.float64:
        raise ValueError("impl='triton' takes fp32, fp16 or bf16 hidden; use 'chunked' for float64")
    if not hidden.is_cuda:
        from swirl.kernels.target_logprobs import INTERPRET

        if not INTERPRET:
            raise ValueError(
                f"impl='triton' needs CUDA tensors (hidden is on {hidden.device}), or "
                "TRITON_INTERPRET=1 set before swirl.kernels is imported"
            )
    return "triton"
