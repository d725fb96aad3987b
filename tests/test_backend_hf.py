"""The local transformers backend on the real embedded model, with each of its two engines."""

from __future__ import annotations

import pytest
import torch

from swirl.backends.base import GenerationBackend, SamplingParams
from swirl.backends.hf import HFBackend
from swirl.prompts import TEMPLATES, chat_prompt_ids
from swirl.tags import find_action_stop

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["fast", "reference"])
def backend(embedded_model, request) -> HFBackend:
    model, tokenizer = embedded_model
    return HFBackend(model, tokenizer, name="smollm2", max_batch_size=8, engine=request.param)


@pytest.fixture(scope="module")
def prompts(backend) -> list[list[int]]:
    """Three environment prompts (shared instructions, different lengths) and a short chat."""
    template = TEMPLATES["math"]
    questions = ["Sara has 5 apples and eats 2. How many are left?", "What is 7 times 8?"]
    out = [
        chat_prompt_ids(backend.tokenizer, template.messages(q, max_steps=10)) for q in questions
    ]
    out.append(chat_prompt_ids(backend.tokenizer, [{"role": "user", "content": "Name a color."}]))
    return out


def test_protocol(backend):
    assert isinstance(backend, GenerationBackend)
    assert backend.context_length == backend.model.config.max_position_embeddings


def test_batched_greedy_equals_transformers_generate(backend, prompts):
    params = SamplingParams(max_new_tokens=12, temperature=0, stop_at_action=False)
    batched = backend.generate(prompts, params)
    for prompt, completion in zip(prompts, batched, strict=True):
        reference = backend.model.generate(
            torch.tensor([prompt]),
            max_new_tokens=12,
            do_sample=False,
            attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
        )[0, len(prompt) :].tolist()
        # generate() pads after EOS; ours stops on it and keeps it.
        assert completion.token_ids == reference[: len(completion.token_ids)]
        assert completion.finish_reason in ("eos", "length")
        assert completion.text == backend.tokenizer.decode(completion.token_ids)
        if completion.finish_reason == "eos":
            assert completion.token_ids[-1] in backend.eos_ids


def test_seeded_sampling_is_reproducible_and_independent_of_the_batch(backend, prompts):
    rows = [
        SamplingParams(max_new_tokens=10, temperature=1.0, seed=s, stop_at_action=False)
        for s in (1, 2, 3)
    ]
    together = backend.generate(prompts, rows)
    alone = [backend.generate([p], [r])[0] for p, r in zip(prompts, rows, strict=True)]
    assert [c.token_ids for c in together] == [c.token_ids for c in alone]
    # A shared seed gives each row its own stream: identical prompts, different samples.
    twins = backend.generate([prompts[0]] * 4, SamplingParams(max_new_tokens=10, seed=9))
    assert len({tuple(c.token_ids) for c in twins}) > 1


def test_stops_right_after_the_token_closing_the_action(backend):
    tokenizer = backend.tokenizer
    # The assistant turn is already inside an answer tag: the model closes it within a few tokens.
    prompt = chat_prompt_ids(
        tokenizer, [{"role": "user", "content": "What is 2+2? Reply as <answer>N</answer>."}]
    )
    prompt += tokenizer.encode("<answer>4", add_special_tokens=False)
    (completion,) = backend.generate([prompt], SamplingParams(max_new_tokens=20, temperature=0))
    assert completion.finish_reason == "action"
    ids = completion.token_ids
    assert find_action_stop(tokenizer.decode(ids)) >= 0
    assert find_action_stop(tokenizer.decode(ids[:-1])) < 0
    # Without the stop, the same greedy run goes on past the tag.
    (free,) = backend.generate(
        [prompt], SamplingParams(max_new_tokens=20, temperature=0, stop_at_action=False)
    )
    assert free.token_ids[: len(ids)] == ids and len(free.token_ids) > len(ids)


def test_budget_context_and_bad_input(backend, prompts):
    (short,) = backend.generate(
        [prompts[0]], SamplingParams(max_new_tokens=3, temperature=0, stop_at_action=False)
    )
    assert short.finish_reason == "length" and len(short.token_ids) == 3
    tight = HFBackend(
        backend.model,
        backend.tokenizer,
        context_length=len(prompts[2]) + 2,
        engine=backend.engine,
    )
    (cut,) = tight.generate(
        [prompts[2]], SamplingParams(max_new_tokens=50, temperature=0, stop_at_action=False)
    )
    assert len(cut.token_ids) <= 2
    with pytest.raises(ValueError, match="prompt 0 is empty"):
        backend.generate([[]], SamplingParams())
    assert backend.generate([], SamplingParams()) == []


def test_in_memory_model_mode_is_restored_and_chat(backend):
    backend.model.train()
    try:
        backend.generate([[1, 2, 3]], SamplingParams(max_new_tokens=2, temperature=0))
        assert backend.model.training
    finally:
        backend.model.eval()
    (reply,) = backend.chat(
        [[{"role": "user", "content": "Say hello."}]],
        SamplingParams(max_new_tokens=8, temperature=0),
    )
    assert isinstance(reply, str) and reply and "<|im_end|>" not in reply


def _recomputed_logprobs(model, prompt, completion, params: SamplingParams) -> torch.Tensor:
    """Independently: one full forward over prompt + completion, logits / T (T = 1 when
    greedy), log-softmax, renormalised to the top-p nucleus when top_p < 1."""
    ids = torch.tensor([list(prompt) + completion.token_ids])
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].double()
    logprobs = (logits / (params.temperature or 1.0)).log_softmax(dim=-1)
    if params.top_p < 1:
        probs = logprobs.exp()
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(dim=-1) - sorted_probs
        kept = torch.zeros_like(probs, dtype=torch.bool).scatter(1, order, before < params.top_p)
        logprobs = logprobs - (probs * kept).sum(dim=-1, keepdim=True).log()
    picked = torch.tensor(completion.token_ids)[:, None]
    return logprobs.gather(1, picked).flatten().float()


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(max_new_tokens=12, temperature=0, stop_at_action=False),
        SamplingParams(max_new_tokens=12, temperature=1.0, seed=3, stop_at_action=False),
        SamplingParams(max_new_tokens=12, temperature=0.7, top_p=0.9, seed=4, stop_at_action=False),
    ],
    ids=["greedy", "t1", "t0.7-top-p0.9"],
)
def test_logprobs_equal_a_recomputation_with_the_model(backend, prompts, params):
    """Completion.logprobs: the log-probability of each sampled token under the distribution it
    was drawn from, at every step (prefill and decode), as a full forward recomputes it."""
    for prompt, completion in zip(prompts, backend.generate(prompts, params), strict=True):
        assert completion.logprobs is not None
        assert len(completion.logprobs) == len(completion.token_ids)
        expected = _recomputed_logprobs(backend.model, prompt, completion, params)
        torch.testing.assert_close(torch.tensor(completion.logprobs), expected, rtol=0, atol=2e-4)
