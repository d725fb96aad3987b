"""The Triton kernels of ``target_logprobs`` against the reference, on CPU tensors through the
Triton interpreter (``TRITON_INTERPRET=1``, set by conftest.py without a GPU): the same kernel code
a GPU compiles, at shapes of at most a few hundred so the interpreter stays fast. With a GPU they
run compiled, on CUDA tensors."""

from __future__ import annotations

import pytest
import torch
from ops_cases import (
    assert_close_fp32,
    assert_low_precision_ok,
    make_case,
    run,
    torch_single_thread,  # noqa: F401 (autouse fixture)
)

from swirl.ops import policy_loss, target_logprobs
from swirl.ops.reference import target_logprobs_reference

kernels = pytest.importorskip("swirl.kernels.target_logprobs")
target_logprobs_triton = kernels.target_logprobs_triton
# tests/conftest.py turns the interpreter on when there is no GPU; with one, the kernels compile
DEVICE = "cpu" if kernels.INTERPRET else "cuda"
if DEVICE == "cuda" and not torch.cuda.is_available():
    pytest.skip("Triton needs a GPU or TRITON_INTERPRET=1", allow_module_level=True)


@pytest.mark.parametrize(
    ("softcap", "temperature", "with_entropy", "vocab_splits", "vocab_chunk"),
    [
        (None, 1.0, False, 1, None),
        (5.0, 0.7, True, 3, 256),  # splits merged on the host, several backward chunks
        (None, 1.6, True, 2, 384),
    ],
)
def test_fp32_matches_reference_on_odd_shape(
    softcap, temperature, with_entropy, vocab_splits, vocab_chunk
):
    # V=1000, D=72, M=37: masked rows, columns and reduction; rows 0-3 share one hidden row
    case = make_case(50, 72, 1000, 37, seed=11).to(DEVICE)
    options = {"softcap": softcap, "temperature": temperature, "with_entropy": with_entropy}
    want = run(target_logprobs_reference, case, **options)
    got = run(
        target_logprobs_triton,
        case,
        vocab_splits=vocab_splits,
        vocab_chunk=vocab_chunk,
        **options,
    )
    assert_close_fp32(got, want)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_within_twice_reference_error(dtype):
    case = make_case(64, 72, 500, 37, seed=12).to(DEVICE)
    assert_low_precision_ok(
        target_logprobs_triton,
        case,
        dtype,
        softcap=30.0,
        with_entropy=True,
        impl_options={"vocab_splits": 2, "vocab_chunk": 256},
    )


def test_single_target_and_tiny_vocabulary():
    case = make_case(1, 8, 3, 1, seed=13).to(DEVICE)
    want = run(target_logprobs_reference, case, with_entropy=True)
    assert_close_fp32(run(target_logprobs_triton, case, with_entropy=True), want)


def test_public_api_and_policy_loss_run_the_kernels():
    case = make_case(20, 40, 300, 30, seed=14).to(DEVICE)
    assert_close_fp32(
        run(target_logprobs, case, impl="triton"), run(target_logprobs, case, impl="reference")
    )
    advantages = torch.randn(30, generator=torch.Generator().manual_seed(15)).to(DEVICE)
    advantages[:5] = 0.0
    old_logp = target_logprobs_reference(case.hidden, case.weight, case.rows, case.targets)
    noise = torch.randn(30, generator=torch.Generator().manual_seed(16)).to(DEVICE)
    old_logp = old_logp + 0.3 * noise
    results = {}
    for impl in ("reference", "triton"):
        hidden = case.hidden.clone().requires_grad_()
        loss, stats = policy_loss(
            hidden,
            case.weight,
            case.rows,
            case.targets,
            advantages,
            old_logp=old_logp,
            clip_low=0.2,
            impl=impl,
        )
        loss.backward()
        results[impl] = (loss.detach(), hidden.grad, stats["clip_frac"])
    assert results["reference"][2] > 0  # clipping is active
    assert results["triton"][2] == results["reference"][2]
    torch.testing.assert_close(results["triton"][0], results["reference"][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(results["triton"][1], results["reference"][1], rtol=1e-4, atol=1e-6)
