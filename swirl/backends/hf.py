"""Local generation with a Hugging Face transformers causal LM, on CPU or GPU.

Continuous batching (:class:`swirl.backends.scheduler.DecodeStream`): up to ``max_batch_size``
rows decode together, each sampling with its own seeded generator (so a row's random draws do not
depend on which other prompts share its batch; its logits may, in the last float bits, as batched
matmuls round differently with the batch's shape), a row leaves the batch as soon as it stops (on
an EOS id, on its token budget, or right after the token that completes a closing action tag) and
a queued prompt takes its place at the next step. :meth:`HFBackend.stream` lets a caller
submit prompts while others decode (an episode's next turn as soon as its tool returns);
:meth:`HFBackend.generate` is one stream of a fixed batch.

Two engines compute the logits; sampling and stopping are the same code for both:

- ``"fast"`` (:mod:`swirl.backends.fast_engine`): packed weights, a slot per row with its own
  position, a shared prefix read once per step and kept across calls, continuations prefilled
  only past what their slot holds. Llama-family models (Llama, Mistral, Qwen2) whose forward it
  computes exactly; anything else is refused (:func:`swirl.backends.decode.unsupported_reason`).
- ``"reference"`` (:mod:`swirl.backends.reference`): the transformers model called with a
  DynamicCache, rows admitted only into an empty batch. Any causal LM; the baseline the fast
  engine is tested against.

``engine="auto"`` (the default) takes the fast engine when it supports the model and the model
is on the CPU, which it is tuned and measured for (``benches/bench_generation.py``); on other
devices it runs with plain ``torch.nn.functional.linear`` and only ``engine="fast"`` selects it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Literal

import msgspec
import torch

from swirl.backends.base import Completion, Message, SamplingParams, params_per_prompt
from swirl.backends.decode import unsupported_reason
from swirl.backends.fast_engine import FastEngine
from swirl.backends.reference import ReferenceEngine
from swirl.backends.scheduler import DecodeStream, Engine, GenerationStats

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

EngineName = Literal["auto", "fast", "reference"]

# Rows decoded together by default: the knee of the weight products' cost per row on a 2-core CPU
# (benches/bench_generation.py prints it): all the embedded model's linears at once cost 6.6 ms
# of CPU per row at 16 rows, 5.2 at 32, 4.4 at 64 and 3.7 at 256; 64 rows get 84% of the rate of
# 256 with a quarter of the cache.
DEFAULT_BATCH_SIZE = 64
# The fast engine's row caches stay within this many bytes (fewer rows when rows are long).
DEFAULT_CACHE_BYTES = 2 << 30


class HFBackend:
    """Sample from a transformers model, given in memory or loaded by name.

    ``HFBackend(model, tokenizer)`` samples from a live model (e.g. the policy being trained; its
    train/eval mode is restored after each call); ``HFBackend.load(name_or_path)`` loads one
    through :func:`swirl.model.load_model` (default: the embedded SmolLM2-135M).

    ``max_batch_size`` bounds the rows decoded together (default :data:`DEFAULT_BATCH_SIZE`);
    ``max_batch_tokens`` bounds the new prompt tokens of one prefill pass, which sets its peak
    memory; ``max_cache_bytes`` bounds the fast engine's row caches. ``engine`` picks how logits
    are computed (see the module docstring); ``"fast"`` raises if the model is not supported,
    ``"auto"`` then (or off the CPU) falls back to ``"reference"``. ``stats`` accumulates what
    the engine computed (decode steps and their rows, prefill tokens).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        name: str | None = None,
        max_batch_size: int = DEFAULT_BATCH_SIZE,
        max_batch_tokens: int = 16384,
        max_cache_bytes: int = DEFAULT_CACHE_BYTES,
        context_length: int | None = None,
        engine: EngineName = "auto",
    ) -> None:
        if max_batch_size < 1 or max_batch_tokens < 1 or max_cache_bytes < 1:
            raise ValueError("max_batch_size, max_batch_tokens and max_cache_bytes must be >= 1")
        if engine not in ("auto", "fast", "reference"):
            raise ValueError(f"engine must be 'auto', 'fast' or 'reference', got {engine!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.name = name or str(getattr(model.config, "_name_or_path", "") or "model")
        self.max_batch_size = max_batch_size
        self.context_length = int(
            context_length or getattr(model.config, "max_position_embeddings", 2048)
        )
        self.eos_ids = _eos_ids(model, tokenizer)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids)
        if engine == "auto":
            on_cpu = next(model.parameters()).device.type == "cpu"
            supported = unsupported_reason(model, self.context_length) is None
            engine = "fast" if on_cpu and supported else "reference"
        self.engine: Literal["fast", "reference"] = engine
        self._engine: Engine = (
            FastEngine(
                model,
                context_length=self.context_length,
                max_rows=max_batch_size,
                max_cache_bytes=max_cache_bytes,
                max_prefill_tokens=max_batch_tokens,
            )
            if engine == "fast"
            else ReferenceEngine(
                model, pad_id=pad_id, max_rows=max_batch_size, max_prefill_tokens=max_batch_tokens
            )
        )
        self.stats = GenerationStats()

    @classmethod
    def load(
        cls,
        name_or_path: str | None = None,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        **kwargs: int | str,
    ) -> HFBackend:
        """Load a model by HF name or path (None: the embedded SmolLM2-135M-Instruct)."""
        from swirl.model import EMBEDDED_MODEL, load_model

        model, tokenizer = load_model(name_or_path, dtype=dtype, device=device)
        return cls(model, tokenizer, name=name_or_path or EMBEDDED_MODEL, **kwargs)

    # -- public API ---------------------------------------------------------------------------

    def stream(self) -> HFStream:
        """A stream to submit prompts to while others decode; see :class:`HFStream`."""
        return HFStream(self)

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        params: SamplingParams | Sequence[SamplingParams],
    ) -> list[Completion]:
        """One completion per prompt (see :class:`swirl.backends.GenerationBackend`)."""
        per_row = params_per_prompt(params, len(prompts))
        for index, prompt in enumerate(prompts):
            if not prompt:
                raise ValueError(f"prompt {index} is empty")
        stream = self.stream()
        for index, (prompt, row_params) in enumerate(zip(prompts, per_row, strict=True)):
            stream.submit(prompt, row_params, index)
        out: list[Completion | None] = [None] * len(prompts)
        for index, completion in stream:
            out[index] = completion  # type: ignore[index]
        return [c for c in out if c is not None]

    def chat(self, conversations: Sequence[Sequence[Message]], params: SamplingParams) -> list[str]:
        """Reply text per conversation, through the tokenizer's chat template."""
        from swirl.prompts import chat_prompt_ids

        prompts = [chat_prompt_ids(self.tokenizer, list(conv)) for conv in conversations]
        params = msgspec.structs.replace(params, stop_at_action=False)
        return [
            self.tokenizer.decode(c.token_ids, skip_special_tokens=True).strip()
            for c in self.generate(prompts, params)
        ]


class HFStream:
    """Prompts in, completions out as they finish: ``submit(prompt, params, key)``, then iterate
    for ``(key, Completion)`` pairs. Submitting while iterating (e.g. an episode's next turn on
    receiving its last) admits the prompt at the next decode step. The model is in eval mode
    while the stream runs (its mode is restored when an iteration ends)."""

    def __init__(self, backend: HFBackend) -> None:
        self.backend = backend
        self._stream = DecodeStream(
            backend._engine,
            backend.tokenizer,
            eos_ids=backend.eos_ids,
            context_length=backend.context_length,
            stats=backend.stats,
        )

    def submit(self, prompt: Sequence[int], params: SamplingParams, key: object) -> None:
        """Queue ``prompt``; its seed (if any) is used as it is."""
        self._stream.submit(prompt, params, key)

    def __iter__(self) -> Iterator[tuple[object, Completion]]:
        model = self.backend.model
        was_training = model.training
        model.eval()
        try:
            yield from self._stream
        finally:
            model.train(was_training)


def _eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    """Every id that ends a turn: the tokenizer's EOS and the generation config's EOS ids."""
    ids: set[int] = set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (tokenizer.eos_token_id, configured):
        if isinstance(value, int):
            ids.add(value)
        elif value is not None:
            ids.update(int(v) for v in value)
    if not ids:
        raise ValueError("the tokenizer and model define no EOS token id")
    return frozenset(ids)
