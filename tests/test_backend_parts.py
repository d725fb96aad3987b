"""Unit tests of the backend building blocks: the sampler and its log-probs, the action stop
detector, seeds."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from swirl.backends.base import SamplingParams, derive_seed, params_per_prompt
from swirl.backends.prompt_tree import common_prefix_length
from swirl.backends.sampling import row_generator, sample
from swirl.backends.stopping import ActionStopDetector
from swirl.tags import find_action_stop_py


@pytest.fixture(scope="module")
def tokenizer():
    from swirl.model import load_tokenizer

    return load_tokenizer()


def reference_sample(
    logits: torch.Tensor, temperature: float, top_p: float, u: float
) -> tuple[int, float]:
    """Plain-Python top-p sampling by inverse CDF with a given uniform draw: the token and its
    log-probability under the distribution it was drawn from."""
    if temperature == 0:
        token = int(logits.argmax())
        return token, float(torch.log_softmax(logits.double(), dim=-1)[token])
    probs = torch.softmax(logits.double() / temperature, dim=-1).tolist()
    # Without a nucleus cut the CDF is walked in vocabulary order, else by falling probability.
    order = list(range(len(probs)))
    if top_p < 1:
        order.sort(key=lambda i: (-probs[i], i))
    kept, mass = [], 0.0
    for i in order:
        if mass >= top_p:
            break
        kept.append(i)
        mass += probs[i]
    total = sum(probs[i] for i in kept)
    running = 0.0
    for i in kept:
        running += probs[i]
        if u * total <= running:
            return i, math.log(probs[i] / total)
    return kept[-1], math.log(probs[kept[-1]] / total)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 2),
    vocab=st.integers(2, 40),
    temperature=st.sampled_from([0.0, 0.3, 1.0, 2.0]),
    top_p=st.sampled_from([1e-6, 0.3, 0.9, 1.0]),
)
def test_sample_matches_reference(seed, vocab, temperature, top_p):
    logits = torch.randn(3, vocab, generator=torch.Generator().manual_seed(seed)) * 3
    seeds = [seed, seed + 1, seed + 2]
    got, logprobs = sample(
        logits,
        torch.full((3,), temperature),
        torch.full((3,), top_p),
        [row_generator(s) for s in seeds],
    )
    for row in range(3):
        u = float(torch.rand(1, generator=row_generator(seeds[row])))
        expected, logprob = reference_sample(logits[row], temperature, top_p, u)
        # Float ties at a CDF boundary may differ in the last ulp; the picked token must at
        # least have the same probability.
        if int(got[row]) != expected:
            probs = torch.softmax(logits[row] / max(temperature, 1e-6), dim=-1)
            assert torch.isclose(probs[int(got[row])], probs[expected], rtol=1e-5)
        assert float(logprobs[row]) == pytest.approx(logprob, abs=1e-5)


def test_a_rows_draw_does_not_depend_on_its_neighbours_top_p():
    logits = torch.randn(2, 50, generator=torch.Generator().manual_seed(0)) * 2
    for seed in range(40):
        alone, alone_logprob = sample(
            logits[:1], torch.tensor([1.0]), torch.tensor([1.0]), [row_generator(seed)]
        )
        mixed, mixed_logprobs = sample(
            logits,
            torch.tensor([1.0, 1.0]),
            torch.tensor([1.0, 0.9]),
            [row_generator(seed), row_generator(seed + 1)],
        )
        assert int(mixed[0]) == int(alone[0])
        assert float(mixed_logprobs[0]) == float(alone_logprob[0])


def test_sample_tiny_top_p_is_greedy_and_distribution_is_right():
    logits = torch.tensor([[0.0, 1.0, 2.0, 0.5]])
    for seed in range(20):
        pick, logprob = sample(
            logits, torch.tensor([1.0]), torch.tensor([1e-6]), [row_generator(seed)]
        )
        assert int(pick) == 2 and abs(float(logprob)) < 1e-6  # the nucleus: the top token alone
    draws = torch.stack(
        [
            sample(logits, torch.tensor([1.0]), torch.tensor([1.0]), [row_generator(s)])[0]
            for s in range(4000)
        ]
    ).flatten()
    frequencies = torch.bincount(draws, minlength=4).float() / len(draws)
    assert torch.allclose(frequencies, torch.softmax(logits[0], dim=-1), atol=0.03)


def test_params_per_prompt_and_seeds():
    shared = SamplingParams(seed=7)
    rows = params_per_prompt(shared, 3)
    assert len({p.seed for p in rows}) == 3
    assert rows == params_per_prompt(shared, 3)  # stable
    assert derive_seed("a", 1) == derive_seed("a", 1) != derive_seed("a", 2)
    assert 0 <= derive_seed("x") < 2**31
    assert params_per_prompt(SamplingParams(), 2)[0].seed is None
    with pytest.raises(ValueError, match="2 SamplingParams for 3 prompts"):
        params_per_prompt([shared, shared], 3)
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(temperature=-1)
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        SamplingParams(max_new_tokens=0)


def testcommon_prefix_length():
    assert common_prefix_length([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix_length([[5], [6]]) == 0
    assert common_prefix_length([[1, 2, 3]]) == 3


TEXTS = st.lists(
    st.sampled_from(
        [
            "Let me",
            " think",
            "<math_exp>",
            "</math_exp>",
            "<answer>",
            "</answer>",
            "</",
            "answer",
            ">",
            "<search_query>",
            "</search_query>",
            " 48 / 2",
            "é",
            "日本",
            "\n",
            " -> ",
            "<",
        ]
    ),
    max_size=12,
).map("".join)


@settings(max_examples=80, deadline=None)
@given(text=TEXTS)
def test_stop_detector_stops_at_the_token_completing_the_first_closing_tag(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=False)
    detector = ActionStopDetector(tokenizer)
    stopped_at = next((i for i, token in enumerate(ids) if detector.feed(token)), None)
    # Reference: the first prefix of ids whose full decoding holds a closing tag.
    expected = next(
        (i for i in range(len(ids)) if find_action_stop_py(tokenizer.decode(ids[: i + 1])) >= 0),
        None,
    )
    assert stopped_at == expected
