"""Inputs and comparisons shared by the tests of ``swirl.ops`` (not a test module itself)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields

import pytest
import torch

from swirl.ops.reference import target_logprobs_reference


@pytest.fixture(autouse=True)
def torch_single_thread() -> Iterator[None]:
    """Run a test on one intra-op thread: these tensors are tiny, and on a busy machine a second
    OpenMP thread makes every small op wait for a descheduled peer (20x slower here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@dataclass
class Case:
    """One random problem: hidden [N, D], weight [V, D], rows/targets [M], upstream gradients."""

    hidden: torch.Tensor
    weight: torch.Tensor
    rows: torch.Tensor
    targets: torch.Tensor
    grad_logp: torch.Tensor
    grad_entropy: torch.Tensor

    def cast(self, dtype: torch.dtype) -> Case:
        """The same case with hidden and weight in ``dtype``."""
        return Case(
            self.hidden.to(dtype),
            self.weight.to(dtype),
            self.rows,
            self.targets,
            self.grad_logp,
            self.grad_entropy,
        )

    def to(self, device: str | torch.device) -> Case:
        """The same case with every tensor on ``device``."""
        return Case(*(getattr(self, f.name).to(device) for f in fields(self)))


def make_case(
    num_rows: int,
    dim: int,
    vocab: int,
    num_targets: int,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    logit_scale: float = 3.0,
    duplicate_rows: bool = True,
) -> Case:
    """Random inputs whose logits have standard deviation about ``logit_scale``.

    With ``duplicate_rows`` the first few targets share one hidden row (sibling branches hanging off
    one prefix) and the targets include both ends of the vocabulary.
    """
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(num_rows, dim, generator=generator)
    weight = torch.randn(vocab, dim, generator=generator) * (logit_scale / dim**0.5)
    rows = torch.randint(0, num_rows, (num_targets,), generator=generator)
    targets = torch.randint(0, vocab, (num_targets,), generator=generator)
    if duplicate_rows and num_targets >= 4:
        rows[:4] = rows[0]
        targets[1], targets[2] = 0, vocab - 1
    grad_logp = torch.randn(num_targets, generator=generator)
    grad_entropy = torch.randn(num_targets, generator=generator)
    return Case(hidden.to(dtype), weight.to(dtype), rows, targets, grad_logp, grad_entropy)


def run(
    fn: Callable, case: Case, *, with_entropy: bool = False, **options
) -> tuple[torch.Tensor, ...]:
    """(logp, [entropy,] grad_hidden, grad_weight) of ``fn`` on ``case`` for the loss
    ``sum(grad_logp * logp) + sum(grad_entropy * entropy)``."""
    hidden = case.hidden.detach().clone().requires_grad_()
    weight = case.weight.detach().clone().requires_grad_()
    out = fn(hidden, weight, case.rows, case.targets, return_entropy=with_entropy, **options)
    outputs = out if with_entropy else (out,)
    loss = (outputs[0] * case.grad_logp.to(outputs[0].dtype)).sum()
    if with_entropy:
        loss = loss + (outputs[1] * case.grad_entropy.to(outputs[1].dtype)).sum()
    loss.backward()
    return (*(o.detach() for o in outputs), hidden.grad, weight.grad)


def max_errors(got: tuple[torch.Tensor, ...], want: tuple[torch.Tensor, ...]) -> list[float]:
    """Max absolute difference of each pair, compared in float64."""
    return [(g.double() - w.double()).abs().max().item() for g, w in zip(got, want, strict=True)]


def output_names(count: int) -> list[str]:
    """Names of the tuple ``run`` returns (with or without the entropy)."""
    names = ["logp", "entropy", "grad_hidden", "grad_weight"]
    return names if count == 4 else [n for n in names if n != "entropy"]


def assert_close_fp32(got, want, *, rtol: float = 1e-4) -> None:
    """Every output within ``rtol`` times the largest magnitude (at least 1) of its reference."""
    for name, error, w in zip(output_names(len(want)), max_errors(got, want), want, strict=True):
        scale = max(w.double().abs().max().item(), 1.0)
        assert error <= rtol * scale, f"{name}: error {error:.3g} > {rtol} * {scale:.3g}"


def assert_low_precision_ok(
    fn: Callable, case: Case, dtype: torch.dtype, impl_options: dict | None = None, **options
) -> None:
    """The flash-attention criterion: ``fn``'s error against an fp32 ground truth (the reference
    on the same, already rounded, inputs upcast to fp32) is at most twice the reference's own
    error in ``dtype``, for the values and both gradients. ``impl_options`` go to ``fn`` only."""
    low = case.cast(dtype)
    truth = run(target_logprobs_reference, low.cast(torch.float32), **options)
    reference_errors = max_errors(run(target_logprobs_reference, low, **options), truth)
    errors = max_errors(run(fn, low, **options, **(impl_options or {})), truth)
    for name, error, reference_error in zip(
        output_names(len(truth)), errors, reference_errors, strict=True
    ):
        # the floor covers fp32 rounding where the reference happens to be exact
        assert error <= 2 * reference_error + 1e-5, (
            f"{name} in {dtype}: error {error:.3g} > 2 x reference error {reference_error:.3g}"
        )
