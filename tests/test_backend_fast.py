"""The fast engine against the reference engine: same token ids under greedy decoding, the same
distribution under sampling, batch-independent seeded draws, and fresh weights after updates."""

from __future__ import annotations

import copy

import pytest
import torch
from tiny_models import Ids, tiny

from swirl.backends.base import SamplingParams
from swirl.backends.hf import HFBackend
from swirl.prompts import TEMPLATES, chat_prompt_ids


def _env_prompt(tokenizer, question: str) -> list[int]:
    return chat_prompt_ids(tokenizer, TEMPLATES["qa"].messages(question, max_steps=5))


@pytest.fixture(scope="module")
def engines(embedded_model) -> tuple[HFBackend, HFBackend]:
    model, tokenizer = embedded_model
    return (
        HFBackend(model, tokenizer, engine="fast", max_batch_size=8),
        HFBackend(model, tokenizer, engine="reference", max_batch_size=8),
    )


@pytest.fixture(scope="module")
def prompts(embedded_model) -> list[list[int]]:
    """Environment prompts of mixed lengths sharing their instructions; a later state of the
    first (the first is its prefix); a duplicate; and a chat prompt sharing only a few tokens."""
    _, tokenizer = embedded_model
    questions = [
        "In which country was the architect of the Palmer Library born?",
        "Which is older, the Brent Canal or the Marlow Mill?",
        "Who founded the company that makes the Vexa phone?",
    ]
    out = [_env_prompt(tokenizer, q) for q in questions]
    turn = (
        "<search_query>Palmer Library architect</search_query><|im_end|>\n<|im_start|>user\n"
        "Palmer Library architect -> Palmer Library: designed by Rosa Vidal in 1931."
        "<|im_end|>\n<|im_start|>assistant\n"
    )
    out.append(out[0] + tokenizer.encode(turn, add_special_tokens=False))
    out.append(list(out[1]))
    out.append(chat_prompt_ids(tokenizer, [{"role": "user", "content": "Name a color."}]))
    return out


@pytest.mark.slow
def test_greedy_token_ids_equal_the_reference(engines, prompts):
    fast, reference = engines
    params = SamplingParams(max_new_tokens=24, temperature=0, stop_at_action=False)
    expected = reference.generate(prompts, params)
    first = fast.generate(prompts, params)
    again = fast.generate(prompts[::-1], params)[::-1]  # the shared prefix now comes cached
    for a, b, c in zip(first, again, expected, strict=True):
        assert a.token_ids == b.token_ids == c.token_ids
        assert a.finish_reason == b.finish_reason == c.finish_reason
        assert a.text == c.text
    # Stopping at the closing tag cuts the same ids at the same place.
    stopped = SamplingParams(max_new_tokens=24, temperature=0)
    ours, theirs = fast.generate(prompts, stopped), reference.generate(prompts, stopped)
    for a, c in zip(ours, theirs, strict=True):
        assert (a.token_ids, a.finish_reason) == (c.token_ids, c.finish_reason)


@pytest.mark.slow
def test_seeded_samples_agree_with_the_reference(engines, prompts):
    fast, reference = engines
    params = [
        SamplingParams(max_new_tokens=16, temperature=1.0, seed=seed, stop_at_action=False)
        for seed in range(len(prompts))
    ]
    ours = [c.token_ids for c in fast.generate(prompts, params)]
    theirs = [c.token_ids for c in reference.generate(prompts, params)]
    # Same uniforms, logits equal up to float rounding: a draw differs only where a uniform
    # falls within rounding of a CDF step, after which the rows diverge.
    pairs = [(a, b) for x, y in zip(ours, theirs, strict=True) for a, b in zip(x, y, strict=False)]
    agree = sum(a == b for a, b in pairs)
    assert agree >= 0.9 * sum(len(x) for x in theirs)


def _chi_square_p(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """p-value of observed ``counts`` [V] against category probabilities ``probs`` [V], with
    every category expected fewer than 5 times pooled into one."""
    total = counts.sum()
    expected = probs * total
    big = expected >= 5
    observed = torch.cat([counts[big], counts[~big].sum()[None]])
    expected = torch.cat([expected[big], expected[~big].sum()[None]])
    statistic = ((observed - expected) ** 2 / expected).sum()
    dof = torch.tensor((len(observed) - 1) / 2, dtype=torch.float64)
    return float(torch.special.gammaincc(dof, statistic.double() / 2))


@pytest.mark.slow
def test_first_token_follows_the_model_distribution(engines, embedded_model):
    """400 seeds, one token each, on a prompt whose next token is uncertain: the fast engine's
    draws fit the softmax of the transformers model's own logits, and the test has the power to
    reject draws from another temperature."""
    fast, _ = engines
    model, tokenizer = embedded_model
    prompt = _env_prompt(tokenizer, "Which is older, the Brent Canal or the Marlow Mill?")
    prompt += tokenizer.encode("I", add_special_tokens=False)
    draws = 400
    params = [
        SamplingParams(max_new_tokens=1, temperature=1.0, seed=seed, stop_at_action=False)
        for seed in range(draws)
    ]
    tokens = torch.tensor([c.token_ids[0] for c in fast.generate([prompt] * draws, params)])
    counts = torch.bincount(tokens, minlength=model.config.vocab_size).double()
    with torch.inference_mode():
        logits = model(torch.tensor([prompt])).logits[0, -1].double()
    assert _chi_square_p(counts, logits.softmax(-1)) > 1e-3
    assert _chi_square_p(counts, (logits / 0.7).softmax(-1)) < 1e-3


@pytest.mark.slow
def test_a_decode_step_follows_the_model_distribution(engines, embedded_model):
    """The second token (a decode step, not the prefill): 800 seeds through 8 slots, so rows are
    admitted into freed slots all along. Among the rows whose first token is the commonest one,
    the second tokens fit the softmax of the transformers model's own logits after that token,
    and the test has the power to reject draws from another temperature."""
    fast, _ = engines
    model, tokenizer = embedded_model
    prompt = _env_prompt(tokenizer, "Which is older, the Brent Canal or the Marlow Mill?")
    prompt += tokenizer.encode("I", add_special_tokens=False)  # both next tokens uncertain
    draws = 800
    params = [
        SamplingParams(max_new_tokens=2, temperature=1.0, seed=seed, stop_at_action=False)
        for seed in range(draws)
    ]
    out = [c.token_ids for c in fast.generate([prompt] * draws, params)]
    first = torch.tensor([ids[0] for ids in out])
    commonest = int(first.mode().values)
    seconds = torch.tensor([ids[1] for ids in out if ids[0] == commonest and len(ids) == 2])
    assert len(seconds) >= 120
    counts = torch.bincount(seconds, minlength=model.config.vocab_size).double()
    with torch.inference_mode():
        logits = model(torch.tensor([[*prompt, commonest]])).logits[0, -1].double()
    assert _chi_square_p(counts, logits.softmax(-1)) > 1e-3
    assert _chi_square_p(counts, (logits / 0.7).softmax(-1)) < 1e-3


@pytest.mark.slow
def test_seeded_rows_do_not_depend_on_the_batch(engines, prompts):
    fast, _ = engines
    rows = [
        SamplingParams(max_new_tokens=12, temperature=1.0, seed=seed, stop_at_action=False)
        for seed in (11, 12, 13)
    ]
    picked = [prompts[0], prompts[3], prompts[5]]
    together = [c.token_ids for c in fast.generate(picked, rows)]
    alone = [fast.generate([p], [r])[0].token_ids for p, r in zip(picked, rows, strict=True)]
    assert together == alone
    # Among other prompts, in another order, through two slots (rows admitted as others stop).
    small = HFBackend(fast.model, fast.tokenizer, engine="fast", max_batch_size=2)
    mixed = [prompts[1], picked[2], prompts[4], picked[0], picked[1]]
    noise = SamplingParams(max_new_tokens=12, temperature=1.0, seed=99, stop_at_action=False)
    out = small.generate(mixed, [noise, rows[2], noise, rows[0], rows[1]])
    assert [out[3].token_ids, out[4].token_ids, out[1].token_ids] == together


@pytest.mark.slow
def test_fast_engine_follows_weight_updates(embedded_model, prompts):
    """After an in-place update (as an optimizer step makes) the fast engine repacks its weights
    and drops its cached prefix: it matches the reference engine on the new weights."""
    model, tokenizer = embedded_model
    model = copy.deepcopy(model)
    fast = HFBackend(model, tokenizer, engine="fast")
    reference = HFBackend(model, tokenizer, engine="reference")
    params = SamplingParams(max_new_tokens=8, temperature=0, stop_at_action=False)
    before = [c.token_ids for c in fast.generate(prompts[:3], params)]
    with torch.no_grad():
        for layer in model.model.layers[:4]:
            layer.mlp.down_proj.weight.mul_(-1.0)
    after = [c.token_ids for c in fast.generate(prompts[:3], params)]
    assert after != before
    assert after == [c.token_ids for c in reference.generate(prompts[:3], params)]


@pytest.mark.parametrize("model_type", ["llama", "qwen2"])
def test_tiny_models_greedy_equal_the_reference(model_type: str):
    """Another layout (Qwen2: biased q/k/v) on a tiny random model, rows of mixed lengths."""
    model = tiny(model_type)
    fast = HFBackend(model, Ids(), engine="fast")
    reference = HFBackend(model, Ids(), engine="reference")
    shared = list(range(5, 25))
    prompts = [[*shared, 30, 31], [*shared, 40], [*shared, 30, 31, 32, 33], [7, 8, 9]]
    params = SamplingParams(max_new_tokens=10, temperature=0, stop_at_action=False)
    ours = [c.token_ids for c in fast.generate(prompts, params)]
    assert ours == [c.token_ids for c in reference.generate(prompts, params)]


def test_unsupported_models_use_the_reference_engine():
    from peft import LoraConfig, get_peft_model

    lora = get_peft_model(tiny("llama"), LoraConfig(r=2, target_modules=["q_proj"]))
    assert HFBackend(lora, Ids()).engine == "reference"
    with pytest.raises(ValueError, match="cannot run this model"):
        HFBackend(lora, Ids(), engine="fast")
    with pytest.raises(ValueError, match="engine must be"):
        HFBackend(tiny("llama"), Ids(), engine="turbo")  # type: ignore[arg-type]


@pytest.mark.slow
def test_the_two_engines_report_the_same_logprobs(engines, prompts):
    fast, reference = engines
    params = SamplingParams(max_new_tokens=16, temperature=0.8, seed=7, stop_at_action=False)
    for a, b in zip(
        fast.generate(prompts, params), reference.generate(prompts, params), strict=True
    ):
        # Up to where the rows diverge (a uniform within rounding of a CDF step), the same tokens
        # with the same log-probs.
        same = next(
            (i for i, (x, y) in enumerate(zip(a.token_ids, b.token_ids, strict=False)) if x != y),
            min(len(a.token_ids), len(b.token_ids)),
        )
        assert same > 0
        torch.testing.assert_close(
            torch.tensor(a.logprobs[:same]), torch.tensor(b.logprobs[:same]), rtol=0, atol=2e-4
        )


def test_a_stream_admits_a_prompt_submitted_mid_stream_before_the_others_finish():
    """Continuous batching: a prompt submitted when a row finishes takes the freed slot before
    the next step and finishes before rows that were admitted earlier; the reference engine,
    which only admits into an empty batch, runs it after them."""
    model = tiny("llama")
    prompts = [[5, 6, 7], [5, 6, 8], [5, 6, 9], [5, 6, 10]]

    def budget(n):
        return SamplingParams(max_new_tokens=n, temperature=0, stop_at_action=False)

    def order(engine: str) -> tuple[list[str], list[int]]:
        backend = HFBackend(model, Ids(), engine=engine, max_batch_size=3)
        # A tiny random model rarely says EOS (id 0); stop only on the budget.
        backend.eos_ids = frozenset({-1})
        stream = backend.stream()
        for key, prompt, n in zip("abc", prompts, (2, 10, 10), strict=False):
            stream.submit(prompt, budget(n), key)
        finished = []
        for key, _ in stream:
            finished.append(key)
            if key == "a":
                stream.submit(prompts[3], budget(3), "d")
        return finished, backend.stats.decode_rows

    finished, rows = order("fast")
    assert finished == ["a", "d", "b", "c"]
    # b and c step while d is prefilled; d's first token is drawn with their next ones.
    assert rows[:4] == [3, 2, 3, 3]
    finished, _ = order("reference")
    assert finished == ["a", "b", "c", "d"]


def test_a_stream_left_early_frees_its_slots():
    """A consumer that stops reading (a break, an exception) leaves no row holding a slot: the
    next call has the whole batch again."""
    model = tiny("llama")
    backend = HFBackend(model, Ids(), engine="fast", max_batch_size=2)
    backend.eos_ids = frozenset({-1})  # stop only on the budget
    stream = backend.stream()
    stream.submit([5, 6, 7], SamplingParams(max_new_tokens=1, temperature=0), "short")
    stream.submit([5, 6, 8], SamplingParams(max_new_tokens=20, temperature=0), "long")
    iterator = iter(stream)
    assert next(iterator)[0] == "short"
    iterator.close()  # what a break does to a generator being read
    assert backend._engine.slots.live() == []
    params = SamplingParams(max_new_tokens=3, temperature=0)
    assert [len(c.token_ids) for c in backend.generate([[1, 2], [3, 4]], params)] == [3, 3]
    assert backend.stats.decode_rows[-2:] == [2, 2]  # both slots decode together again
