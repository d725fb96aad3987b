"""Exact or refused: the fast engine's logits at every decode step against the model itself.

The reference engine samples a continuation of each prompt; both engines are then fed those
tokens one step at a time and every step's logits are compared with the transformers model's own
full forward over prompt + tokens so far (the truth). Covered: attention and MLP biases; rope
default, llama3, yarn, longrope and dynamic; MHA, GQA and MQA; Llama, Mistral and Qwen2; float32
and bfloat16; rows leaving the batch (compaction), a prompt continuing a finished row (in place)
or a live one (copied), the cached prefix reused by the next stream, and a row admitted while
others decode. Configurations the engine cannot compute exactly are refused.
"""

from __future__ import annotations

import copy

import pytest
import torch
from tiny_models import Ids, tiny

from swirl.backends.base import SamplingParams
from swirl.backends.decode import unsupported_reason
from swirl.backends.fast_engine import FastEngine
from swirl.backends.hf import HFBackend
from swirl.backends.reference import ReferenceEngine, cache_keyword

CONTEXT = 64
SHARED = list(range(5, 25))
PROMPTS = [
    [*SHARED, 30, 31],
    [*SHARED, 40],
    [*SHARED, 30, 31, 32, 33, 34, 35],  # continues the first prompt
    [7, 8, 9],  # shares nothing
    [*SHARED, 30, 31],  # the first prompt again
]
STEPS = 8


ROPES = {
    "llama3": {
        "rope_type": "llama3",
        "rope_theta": 10000.0,
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16,
    },
    "yarn": {
        "rope_type": "yarn",
        "rope_theta": 10000.0,
        "factor": 4.0,
        "original_max_position_embeddings": 32,
    },
    "longrope": {
        "rope_type": "longrope",
        "rope_theta": 10000.0,
        "short_factor": [1.0, 1.5, 2.0, 2.5],
        "long_factor": [4.0, 6.0, 8.0, 9.0],
        "original_max_position_embeddings": CONTEXT,
    },
    "dynamic": {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0},
}

CASES = {
    "llama": ("llama", {}),
    "llama-biases": ("llama", {"attention_bias": True, "mlp_bias": True}),
    "llama-mha": ("llama", {"num_key_value_heads": 6}),
    "llama-mqa": ("llama", {"num_key_value_heads": 1}),
    "llama-gelu": ("llama", {"hidden_act": "gelu_pytorch_tanh"}),
    "mistral": ("mistral", {}),
    "qwen2": ("qwen2", {}),
    **{f"rope-{name}": ("llama", {"rope_parameters": rope}) for name, rope in ROPES.items()},
}
# The dynamic rope's own limit is max_position_embeddings: keep the tiny context below it.
_DYNAMIC_LIMIT = {"max_position_embeddings": CONTEXT}
CASES["rope-dynamic"][1].update(_DYNAMIC_LIMIT)


def fast_engine(model, **kwargs) -> FastEngine:
    options = dict(context_length=CONTEXT, max_rows=8, max_cache_bytes=1 << 24)
    options.update(max_prefill_tokens=1024, **kwargs)
    return FastEngine(model, **options)


def reference_engine(model) -> ReferenceEngine:
    return ReferenceEngine(model, pad_id=0, max_rows=8, max_prefill_tokens=1024)


def continuations(model, prompts, steps: int = STEPS) -> list[list[int]]:
    """Tokens the reference engine samples after each prompt (temperature 1, no stop)."""
    backend = HFBackend(model, Ids(), engine="reference", context_length=CONTEXT)
    params = [
        SamplingParams(max_new_tokens=steps, temperature=1.0, seed=row, stop_at_action=False)
        for row in range(len(prompts))
    ]
    out = [c.token_ids for c in backend.generate(prompts, params)]
    # EOS ends a row early; pad every row to `steps` tokens so each step is fed.
    return [(ids + [1] * steps)[:steps] for ids in out]


def drive(engine, prompts, forced, *, stop_after=None):
    """Admit ``prompts`` together and feed ``forced[i]`` to row i, one step at a time; row i
    leaves after ``stop_after[i]`` tokens (default: all). Returns per row the logits [t + 1, V]
    predicting each of its positions after the prompt, and the row handles."""
    stop_after = stop_after or [len(f) for f in forced]
    engine.begin(prompts)
    handles, logits = engine.admit([(p, len(f) + 1) for p, f in zip(prompts, forced, strict=True)])
    assert len(handles) == len(prompts)
    out = [[logits[i]] for i in range(len(prompts))]
    live = list(range(len(prompts)))
    for step in range(max(stop_after)):
        going = [i for i in live if step < stop_after[i]]
        for i in set(live) - set(going):
            engine.release(handles[i])
        if not going:
            break
        tokens = torch.tensor([forced[i][step] for i in going])
        logits = engine.step([handles[i] for i in going], tokens)
        for j, i in enumerate(going):
            out[i].append(logits[j])
        live = going
    for i in live:
        engine.release(handles[i])
    return [torch.stack(rows) for rows in out], handles


@torch.inference_mode()
def truth(model, prompt, tokens) -> torch.Tensor:
    """The model's own logits [len(tokens) + 1, V] (float32) after the prompt and each token."""
    ids = torch.tensor([list(prompt) + list(tokens)])
    logits = model(input_ids=ids).logits[0].float()
    return logits[len(prompt) - 1 :]


def assert_close_to_truth(model, prompts, forced, got, *, reference=None):
    """Each row's logits against the truth: float32 within 1e-4; bfloat16 within twice the
    reference engine's own bfloat16 error against the float32 model (plus 1e-2)."""
    precise = model if model.dtype == torch.float32 else copy.deepcopy(model).float()
    for row, (prompt, logits) in enumerate(zip(prompts, got, strict=True)):
        expected = truth(precise, prompt, forced[row][: len(logits) - 1])
        if model.dtype == torch.float32:
            torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
        else:
            error = (logits - expected).abs().amax(dim=-1)
            bound = 2 * (reference[row] - expected).abs().amax(dim=-1) + 1e-2
            assert bool((error <= bound).all()), (row, error, bound)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("case", list(CASES))
def test_logits_at_every_decode_step_match_the_model(case: str, dtype: torch.dtype) -> None:
    model_type, overrides = CASES[case]
    model = tiny(model_type, dtype, **overrides)
    assert unsupported_reason(model, CONTEXT) is None
    forced = continuations(model, PROMPTS)
    # Rows leave at different steps: the fast engine compacts the rest.
    stop_after = [STEPS, 2, STEPS, 5, 1]
    reference, _ = drive(reference_engine(model), PROMPTS, forced, stop_after=stop_after)
    engine = fast_engine(model)
    fast, _ = drive(engine, PROMPTS, forced, stop_after=stop_after)
    assert_close_to_truth(model, PROMPTS, forced, reference, reference=reference)
    assert_close_to_truth(model, PROMPTS, forced, fast, reference=reference)

    # The next stream: each prompt continues a finished row (its prompt, the tokens it was fed
    # and two more), admitted into that row's slot; the cached prefix is reused.
    longer = [p + f[:n] + [50, 51] for p, f, n in zip(PROMPTS, forced, stop_after, strict=True)]
    more = continuations(model, longer, steps=4)
    before = sum(engine.prefill_passes)
    reference, _ = drive(reference_engine(model), longer, more)
    again, _ = drive(engine, longer, more)
    # Only the two new tokens of each (and one trie placeholder per distinct prompt) ran.
    assert sum(engine.prefill_passes) - before <= 3 * len(longer)
    assert_close_to_truth(model, longer, more, again, reference=reference)


def test_a_row_admitted_while_others_decode_and_a_live_row_continued() -> None:
    """Continuous batching: a prompt joins after two steps; one continues a live row's content
    (its columns copied into a new slot, the live row going on unchanged)."""
    model = tiny("qwen2")
    forced = continuations(model, PROMPTS[:2])
    engine = fast_engine(model)
    engine.begin(PROMPTS[:2])
    handles, first = engine.admit([(p, STEPS + 1) for p in PROMPTS[:2]])
    got = [[first[0]], [first[1]]]
    for step in range(2):
        logits = engine.step(handles, torch.tensor([f[step] for f in forced]))
        got[0].append(logits[0])
        got[1].append(logits[1])
    # Row 0 holds prompt 0 and two tokens: a prompt extending them reuses its columns.
    joined = PROMPTS[0] + forced[0][:2] + [60, 61]
    tail = continuations(model, [joined], steps=3)[0]
    before = sum(engine.prefill_passes)
    (late,), late_first = engine.admit([(joined, 4)])
    assert sum(engine.prefill_passes) - before <= 3
    late_logits = [late_first[0]]
    rows = [*handles, late]
    for step in range(3):
        tokens = torch.tensor([forced[0][2 + step], forced[1][2 + step], tail[step]])
        logits = engine.step(rows, tokens)
        got[0].append(logits[0])
        got[1].append(logits[1])
        late_logits.append(logits[2])
    assert_close_to_truth(
        model,
        [*PROMPTS[:2], joined],
        [*forced, tail],
        [torch.stack(got[0]), torch.stack(got[1]), torch.stack(late_logits)],
    )


def test_rows_that_overflow_the_byte_bound_wait_and_the_cache_stays_within_it() -> None:
    """A cache bound that holds two rows: a third waits until one finishes, and the buffers
    never exceed the bound; the logits stay exact through the rebuilds."""
    model = tiny("llama")
    per_row = CONTEXT * fast_engine(model).slots.bytes_per_token
    engine = fast_engine(model, max_rows=4, max_cache_bytes=2 * per_row)
    prompts = [p + [3] * 30 for p in PROMPTS[:3]]  # 32 to 44 columns each past the prefix
    forced = continuations(model, prompts, steps=6)
    engine.begin(prompts)
    handles, first = engine.admit([(p, 7) for p in prompts])
    assert len(handles) == 2
    assert engine.slots.keys.nbytes + engine.slots.values.nbytes <= 2 * per_row
    got = [[first[0]], [first[1]], []]
    for step in range(3):
        logits = engine.step(handles, torch.tensor([forced[0][step], forced[1][step]]))
        got[0].append(logits[0])
        got[1].append(logits[1])
    engine.release(handles[0])
    (late,), late_first = engine.admit([(prompts[2], 7)])
    assert engine.slots.keys.nbytes + engine.slots.values.nbytes <= 2 * per_row
    got[2].append(late_first[0])
    rows = [handles[1], late]
    for step in range(3):
        logits = engine.step(rows, torch.tensor([forced[1][3 + step], forced[2][step]]))
        got[1].append(logits[0])
        got[2].append(logits[1])
    assert_close_to_truth(model, prompts, forced, [torch.stack(rows) for rows in got])


def test_refused_configurations() -> None:
    lora_free = tiny("llama")
    assert unsupported_reason(lora_free, 128) is None
    longrope = tiny("llama", rope_parameters=ROPES["longrope"])
    assert "rotary scaling" in unsupported_reason(longrope, CONTEXT + 1)
    assert unsupported_reason(longrope, CONTEXT) is None
    window = tiny("mistral", sliding_window=16)
    assert "window" in unsupported_reason(window, 17)
    assert unsupported_reason(window, 16) is None
    qwen = tiny("qwen2", use_sliding_window=True, sliding_window=16, max_window_layers=1)
    assert "window" in unsupported_reason(qwen, 32)
    assert unsupported_reason(tiny("qwen2", sliding_window=16), 32) is None  # window unused
    half = tiny("llama").half()
    assert "dtype" in unsupported_reason(half, 32)
    # auto falls back to the reference engine where the fast one would not be exact.
    assert HFBackend(window, Ids()).engine == "reference"
    assert HFBackend(window, Ids(), context_length=16).engine == "fast"
    with pytest.raises(ValueError, match="cannot run this model"):
        HFBackend(longrope, Ids(), engine="fast")


def test_a_subclass_or_replaced_module_is_refused() -> None:
    """Exact classes, not isinstance: a module the engine does not mirror is refused."""
    from transformers.models.llama.modeling_llama import LlamaMLP

    class ScaledMLP(LlamaMLP):
        def forward(self, x):
            return 2 * super().forward(x)

    model = tiny("llama")
    old = model.model.layers[1].mlp
    model.model.layers[1].mlp = ScaledMLP(model.config)
    model.model.layers[1].mlp.load_state_dict(old.state_dict())
    assert "ScaledMLP" in unsupported_reason(model, 32)


def test_the_fallback_without_onednn_packing_is_exact(monkeypatch) -> None:
    """Forced off (as on a CPU without the instructions for the dtype), packing falls back to
    F.linear with the same logits."""
    import swirl.backends.decode as decode

    real = decode.PackedLinear

    def unpacked(parts, *, rows_hint):
        return real(parts, rows_hint=rows_hint, pack=False)

    monkeypatch.setattr(decode, "PackedLinear", unpacked)
    model = tiny("llama", attention_bias=True, mlp_bias=True)
    forced = continuations(model, PROMPTS)
    engine = fast_engine(model)
    fast, _ = drive(engine, PROMPTS, forced)
    assert all(not layer.qkv.packed for layer in engine.net._layers)
    assert_close_to_truth(model, PROMPTS, forced, fast)


def test_weight_updates_are_read_into_the_same_buffers() -> None:
    """After an in-place update the engine reads the new weights (into the buffers it already
    holds) and drops the caches computed with the old ones."""
    model = tiny("llama", attention_bias=True)
    forced = continuations(model, PROMPTS)
    engine = fast_engine(model)
    drive(engine, PROMPTS, forced)
    stacked = engine.net._layers[0].qkv._stacked.data_ptr()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(1.1)
    forced = continuations(model, PROMPTS)
    fast, _ = drive(engine, PROMPTS, forced)
    assert engine.net._layers[0].qkv._stacked.data_ptr() == stacked
    assert_close_to_truth(model, PROMPTS, forced, fast)


class _Wrapper(torch.nn.Module):
    """A wrapper that forwards every keyword, as PEFT's and DDP's do."""

    def __init__(self, inner) -> None:
        super().__init__()
        self.inner = inner
        self.config = inner.config
        self.device = inner.device

    def forward(self, *args, **kwargs):
        return self.inner(*args, **kwargs)


def test_the_cache_keyword_is_the_wrapped_models_not_the_wrappers() -> None:
    """A wrapper forwards ``**kwargs``: the keyword must be read off the transformers model
    inside it, or a release that renamed ``past_key_values`` to ``cache`` gets the dropped name
    (5.40 drops it without using the cache)."""
    import inspect

    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    class Renamed(LlamaForCausalLM):
        """The model as a transformers release that renamed the keyword calls it."""

        def forward(self, input_ids=None, cache=None, **kwargs):
            assert "past_key_values" not in kwargs
            return super().forward(input_ids=input_ids, past_key_values=cache, **kwargs)

    model = tiny("llama")
    own = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    lora = get_peft_model(copy.deepcopy(model), LoraConfig(r=2, target_modules=["q_proj"]))
    assert cache_keyword(model) == cache_keyword(lora) == own
    renamed = copy.deepcopy(model)
    renamed.__class__ = Renamed
    assert cache_keyword(_Wrapper(renamed)) == "cache"

    # Greedy decoding through either wrapper uses the cache: the same ids as the bare model's
    # (LoRA's adapter starts at 0, so it computes the same function).
    params = [SamplingParams(max_new_tokens=STEPS, temperature=0.0, stop_at_action=False)] * 2
    want = HFBackend(model, Ids(), engine="reference", context_length=CONTEXT)
    want = [c.token_ids for c in want.generate(PROMPTS[:2], params)]
    for wrapped in (lora, _Wrapper(renamed)):
        backend = HFBackend(wrapped, Ids(), engine="reference", context_length=CONTEXT)
        assert [c.token_ids for c in backend.generate(PROMPTS[:2], params)] == want
