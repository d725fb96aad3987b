"""The chunked path of ``swirl.ops.target_logprobs`` against the full-logits reference."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from ops_cases import (
    assert_close_fp32,
    assert_low_precision_ok,
    make_case,
    run,
    torch_single_thread,  # noqa: F401 (autouse fixture)
)

from swirl.ops import target_logprobs
from swirl.ops.chunked import target_logprobs_chunked
from swirl.ops.reference import target_logprobs_reference

# (softcap, temperature, with_entropy)
TRANSFORMS = [(None, 1.0, False), (30.0, 1.0, False), (5.0, 0.7, True), (None, 1.6, True)]


@pytest.mark.parametrize(("softcap", "temperature", "with_entropy"), TRANSFORMS)
@pytest.mark.parametrize(("vocab_chunk", "target_chunk"), [(None, None), (128, 8), (999, 36)])
def test_fp32_matches_reference_on_odd_shape(
    softcap, temperature, with_entropy, vocab_chunk, target_chunk
):
    # V=1000, D=72, M=37: no size is a multiple of a chunk; rows 0-3 share one hidden row
    case = make_case(50, 72, 1000, 37, seed=1)
    options = {"softcap": softcap, "temperature": temperature, "with_entropy": with_entropy}
    want = run(target_logprobs_reference, case, **options)
    got = run(
        target_logprobs_chunked,
        case,
        vocab_chunk=vocab_chunk,
        target_chunk=target_chunk,
        **options,
    )
    assert_close_fp32(got, want)


def test_duplicate_rows_accumulate_gradient():
    # three targets on the same row: that row's gradient is the sum of three contributions
    case = make_case(6, 16, 50, 3, seed=2, duplicate_rows=False)
    case.rows = torch.tensor([4, 4, 4])
    got = run(target_logprobs_chunked, case, vocab_chunk=16, target_chunk=2)
    want = run(target_logprobs_reference, case)
    assert_close_fp32(got, want)
    grad_hidden = got[1]
    assert grad_hidden[4].abs().sum() > 0
    assert torch.count_nonzero(grad_hidden[[0, 1, 2, 3, 5]]) == 0
    singles = [
        run(target_logprobs_chunked, _only(case, i), vocab_chunk=16, target_chunk=2)[1][4]
        for i in range(3)
    ]
    torch.testing.assert_close(grad_hidden[4], sum(singles), rtol=1e-5, atol=1e-6)


def _only(case, index):
    single = make_case(6, 16, 50, 1, seed=2, duplicate_rows=False)
    single.hidden, single.weight = case.hidden, case.weight
    single.rows, single.targets = case.rows[index : index + 1], case.targets[index : index + 1]
    single.grad_logp = case.grad_logp[index : index + 1]
    return single


def test_single_target():
    case = make_case(3, 24, 77, 1, seed=3)
    want = run(target_logprobs_reference, case, with_entropy=True, softcap=4.0)
    got = run(target_logprobs_chunked, case, with_entropy=True, softcap=4.0, vocab_chunk=10)
    assert_close_fp32(got, want)


def test_large_logits_stay_finite_and_exact():
    # logits of magnitude ~1e3: a naive exp overflows, the online log-sum-exp must not
    case = make_case(20, 32, 300, 25, seed=4, logit_scale=1000.0)
    want = run(target_logprobs_reference, case, with_entropy=True)
    got = run(target_logprobs_chunked, case, with_entropy=True, vocab_chunk=64, target_chunk=7)
    assert all(torch.isfinite(t).all() for t in got)
    assert_close_fp32(got, want)


def test_logp_is_a_log_probability():
    case = make_case(10, 16, 40, 10, seed=5, duplicate_rows=False)
    case.rows = torch.full((40,), 3)
    case.targets = torch.arange(40)
    logp = target_logprobs_chunked(case.hidden, case.weight, case.rows, case.targets, vocab_chunk=7)
    # all 40 tokens of one row: the probabilities sum to one
    torch.testing.assert_close(logp.exp().sum(), torch.tensor(1.0), rtol=1e-5, atol=1e-5)
    assert logp.dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(("softcap", "temperature", "with_entropy"), TRANSFORMS[::2])
def test_low_precision_within_twice_reference_error(dtype, softcap, temperature, with_entropy):
    case = make_case(64, 72, 1000, 37, seed=6)
    assert_low_precision_ok(
        target_logprobs_chunked,
        case,
        dtype,
        softcap=softcap,
        temperature=temperature,
        with_entropy=with_entropy,
        impl_options={"vocab_chunk": 256, "target_chunk": 16},
    )


def test_gradient_only_for_what_requires_it():
    case = make_case(8, 16, 30, 6, seed=7)
    weight = case.weight.clone().requires_grad_()
    logp = target_logprobs_chunked(case.hidden, weight, case.rows, case.targets, vocab_chunk=8)
    logp.sum().backward()
    want = case.weight.clone().requires_grad_()
    target_logprobs_reference(case.hidden, want, case.rows, case.targets).sum().backward()
    torch.testing.assert_close(weight.grad, want.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "fn",
    [target_logprobs_reference, target_logprobs_chunked],
    ids=["reference", "chunked"],
)
def test_gradcheck_float64(fn):
    case = make_case(5, 4, 11, 6, seed=8, dtype=torch.float64)
    hidden = case.hidden.clone().requires_grad_()
    weight = case.weight.clone().requires_grad_()
    options = {"softcap": 2.0, "temperature": 0.8, "return_entropy": True}
    if fn is target_logprobs_chunked:
        options.update(vocab_chunk=4, target_chunk=4)

    def both(h, w):
        return fn(h, w, case.rows, case.targets, **options)

    assert torch.autograd.gradcheck(both, (hidden, weight))


@settings(max_examples=25, deadline=None)
@given(
    num_rows=st.integers(1, 9),
    dim=st.integers(1, 20),
    vocab=st.integers(1, 70),
    num_targets=st.integers(1, 17),
    vocab_chunk=st.integers(1, 80),
    target_chunk=st.integers(1, 20),
    softcap=st.sampled_from([None, 0.5, 30.0]),
    temperature=st.sampled_from([0.25, 1.0, 3.0]),
    seed=st.integers(0, 2**16),
)
def test_random_shapes_and_tiles(
    num_rows, dim, vocab, num_targets, vocab_chunk, target_chunk, softcap, temperature, seed
):
    case = make_case(num_rows, dim, vocab, num_targets, seed=seed)
    options = {"softcap": softcap, "temperature": temperature, "with_entropy": True}
    want = run(target_logprobs_reference, case, **options)
    got = run(
        target_logprobs_chunked, case, vocab_chunk=vocab_chunk, target_chunk=target_chunk, **options
    )
    assert_close_fp32(got, want)


def test_public_entry_point_dispatches():
    case = make_case(12, 16, 90, 10, seed=9)
    want = run(target_logprobs_reference, case)
    for impl in ("auto", "chunked", "reference"):
        assert_close_fp32(run(target_logprobs, case, impl=impl), want)
