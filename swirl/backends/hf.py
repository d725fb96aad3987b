"""Local generation with a Hugging Face transformers causal LM, on CPU or GPU.

Batched sampling with a KV cache: prompts are decoded together, the prefix they all share (the
instructions and few-shot examples of an environment prompt) is computed once, each row samples
with its own seeded generator (so a row's random draws do not depend on which other prompts share
its batch; its logits may, in the last float bits, as batched matmuls round differently with the
batch's shape), and a row leaves the batch as soon as it stops: on an EOS id, on its token budget,
or right after the token that completes a closing action tag.

Two engines compute the logits; sampling and stopping are the same code for both:

- ``"fast"`` (:mod:`swirl.backends.decode`): packed weights, preallocated caches, a shared prefix
  read once per step and kept across calls, prompts that are prefixes of others not prefilled
  again. Llama-family models (Llama, Mistral without sliding window, Qwen2) with plain linears.
- ``"reference"``: the transformers model called with a DynamicCache, the shared prefix's cache
  copied to every row. Any causal LM; the baseline the fast engine is tested against.

``engine="auto"`` (the default) takes the fast engine when it supports the model and the model
is on the CPU, which it is tuned and measured for (``benches/bench_generation.py``); on other
devices it runs with plain ``torch.nn.functional.linear`` and only ``engine="fast"`` selects it.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, Protocol

import msgspec
import torch

from swirl.backends.base import Completion, FinishReason, Message, SamplingParams, params_per_prompt
from swirl.backends.decode import FastDecoder, unsupported_reason
from swirl.backends.prompt_tree import common_prefix_length
from swirl.backends.stopping import ActionStopDetector

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# Below this many shared tokens a separate prefix pass costs the reference engine more than it saves.
_MIN_SHARED_PREFIX = 16

Engine = Literal["auto", "fast", "reference"]


class DecodeSession(Protocol):
    """A batch being decoded by one engine: rows are the prompts still sampling, in order."""

    def keep(self, rows: list[int]) -> None:
        """Only these rows (indices into the current rows, ascending) go on."""
        ...

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Append one token per row (``tokens`` [R] int64); return the next logits [R, V]."""
        ...


class HFBackend:
    """Sample from a transformers model, given in memory or loaded by name.

    ``HFBackend(model, tokenizer)`` samples from a live model (e.g. the policy being trained; its
    train/eval mode is restored after each call); ``HFBackend.load(name_or_path)`` loads one
    through :func:`swirl.model.load_model` (default: the embedded SmolLM2-135M).

    ``max_batch_size`` bounds the rows decoded together; ``max_batch_tokens`` bounds the padded
    prompt tokens (beyond the shared prefix) of one prefill pass, which sets peak memory.
    ``engine`` picks how logits are computed (see the module docstring); ``"fast"`` raises if the
    model is not supported, ``"auto"`` then (or off the CPU) falls back to ``"reference"``.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        name: str | None = None,
        max_batch_size: int = 32,
        max_batch_tokens: int = 16384,
        context_length: int | None = None,
        engine: Engine = "auto",
    ) -> None:
        if max_batch_size < 1 or max_batch_tokens < 1:
            raise ValueError("max_batch_size and max_batch_tokens must be >= 1")
        if engine not in ("auto", "fast", "reference"):
            raise ValueError(f"engine must be 'auto', 'fast' or 'reference', got {engine!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.name = name or str(getattr(model.config, "_name_or_path", "") or "model")
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.context_length = int(
            context_length or getattr(model.config, "max_position_embeddings", 2048)
        )
        self.eos_ids = _eos_ids(model, tokenizer)
        self.pad_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids)
        )
        # transformers 5 renamed the forward's `past_key_values` argument to `cache`.
        params = inspect.signature(model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"
        if engine == "auto":
            on_cpu = next(model.parameters()).device.type == "cpu"
            engine = "fast" if on_cpu and unsupported_reason(model) is None else "reference"
        self.engine: Literal["fast", "reference"] = engine
        self._fast = FastDecoder(model, rows_hint=max_batch_size) if engine == "fast" else None

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
        out: list[Completion | None] = [None] * len(prompts)
        # Similar lengths together: less padding.
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        was_training = self.model.training
        self.model.eval()
        try:
            for chunk in self._chunks(order, prompts):
                results = self._generate_batch(
                    [prompts[i] for i in chunk], [per_row[i] for i in chunk]
                )
                for index, completion in zip(chunk, results, strict=True):
                    out[index] = completion
        finally:
            self.model.train(was_training)
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

    # -- batching -----------------------------------------------------------------------------

    def _chunks(self, order: list[int], prompts: Sequence[Sequence[int]]) -> list[list[int]]:
        """Split the length-sorted rows into batches within the row and padded-token budgets
        (tokens past the prefix all prompts share, which the prefill computes once)."""
        shared = common_prefix_length(prompts)
        chunks: list[list[int]] = []
        current: list[int] = []
        for index in order:
            longest = len(prompts[index]) - shared  # sorted ascending: the newest is the longest
            if current and (
                len(current) == self.max_batch_size
                or (len(current) + 1) * longest > self.max_batch_tokens
            ):
                chunks.append(current)
                current = []
            current.append(index)
        if current:
            chunks.append(current)
        return chunks

    @torch.inference_mode()
    def _generate_batch(
        self, prompts: list[Sequence[int]], params: list[SamplingParams]
    ) -> list[Completion]:
        batch = len(prompts)
        budgets = [
            min(p.max_new_tokens, max(self.context_length - len(q), 0))
            for p, q in zip(params, prompts, strict=True)
        ]
        session, logits = self._start(prompts, max(budgets))

        temperatures = torch.tensor([p.temperature for p in params], dtype=torch.float32)
        top_ps = torch.tensor([p.top_p for p in params], dtype=torch.float32)
        generators = [_row_generator(p.seed) for p in params]
        detectors = [
            ActionStopDetector(self.tokenizer) if p.stop_at_action else None for p in params
        ]
        sampled: list[list[int]] = [[] for _ in range(batch)]
        finish: list[FinishReason | None] = [None] * batch
        for row, budget in enumerate(budgets):
            if budget == 0:
                finish[row] = "length"
        live = [row for row in range(batch) if finish[row] is None]  # batch rows still sampling
        if len(live) < batch:
            session.keep(live)
            logits = logits[live]

        while live:
            tokens = _sample(
                logits.float().cpu(),
                temperatures[live],
                top_ps[live],
                [generators[row] for row in live],
            )
            still: list[int] = []  # positions in `live` of rows that go on
            for slot, row in enumerate(live):
                token = int(tokens[slot])
                sampled[row].append(token)
                detector = detectors[row]
                if token in self.eos_ids:
                    finish[row] = "eos"
                elif detector is not None and detector.feed(token):
                    finish[row] = "action"
                elif len(sampled[row]) >= budgets[row]:
                    finish[row] = "length"
                else:
                    still.append(slot)
            if len(still) < len(live):
                session.keep(still)  # also when none goes on: the fast engine keeps their caches
                tokens = tokens[still]
                live = [live[slot] for slot in still]
            if live:
                logits = session.step(tokens)

        return [
            Completion(
                token_ids=ids,
                text=self.tokenizer.decode(ids, skip_special_tokens=False),
                finish_reason=reason or "length",
            )
            for ids, reason in zip(sampled, finish, strict=True)
        ]

    def _start(self, prompts: list[Sequence[int]], room: int) -> tuple[DecodeSession, torch.Tensor]:
        """Prefill with the chosen engine: the session and the first logits [B, V]."""
        if self._fast is not None:
            return self._fast.start(prompts, room, max_tokens=self.max_batch_tokens)
        return _ReferenceSession.start(self, prompts)


class _ReferenceSession:
    """The reference engine: the transformers model with a DynamicCache, rows left-padded."""

    def __init__(
        self,
        backend: HFBackend,
        cache: object,
        attention: torch.Tensor,
        next_position: torch.Tensor,
    ) -> None:
        self.backend = backend
        self.cache = cache
        self.attention = attention  # [B, L] over the cache slots
        self.next_position = next_position  # [B]

    @classmethod
    def start(
        cls, backend: HFBackend, prompts: list[Sequence[int]]
    ) -> tuple[_ReferenceSession, torch.Tensor]:
        """Run the prompts through the model; return the session and the last logits [B, V].

        Layout of row b: the shared prefix, then padding, then the rest of prompt b, so every
        row's last prompt token sits in the last slot.
        """
        from transformers import DynamicCache

        model = backend.model
        device = model.device
        batch = len(prompts)
        try:
            cache = DynamicCache(config=model.config)
        except TypeError:  # transformers < 4.56
            cache = DynamicCache()
        shared = common_prefix_length(prompts)
        if batch == 1 or shared < _MIN_SHARED_PREFIX:
            shared = 0
        # Keep one token per row after the prefix: its logits start the completion.
        shared = min(shared, min(len(p) for p in prompts) - 1)
        if shared > 0:
            prefix = torch.tensor([list(prompts[0][:shared])], device=device)
            model(
                input_ids=prefix,
                attention_mask=torch.ones_like(prefix),
                use_cache=True,
                logits_to_keep=1,
                **{backend._cache_kwarg: cache},
            )
            cache.batch_repeat_interleave(batch)
        rests = [list(p[shared:]) for p in prompts]
        width = max(len(r) for r in rests)
        input_ids = torch.full((batch, width), backend.pad_id, dtype=torch.long)
        attention = torch.zeros((batch, shared + width), dtype=torch.long)
        attention[:, :shared] = 1
        for row, rest in enumerate(rests):
            input_ids[row, width - len(rest) :] = torch.tensor(rest)
            attention[row, shared + width - len(rest) :] = 1
        # Positions count real tokens only, so padding never shifts a row's rotary positions.
        positions = (attention.cumsum(dim=1) - 1).clamp(min=0)
        attention = attention.to(device)
        output = model(
            input_ids=input_ids.to(device),
            attention_mask=attention,
            position_ids=positions[:, shared:].to(device),
            use_cache=True,
            logits_to_keep=1,
            **{backend._cache_kwarg: cache},
        )
        next_position = positions[:, -1].to(device) + 1
        return cls(backend, cache, attention, next_position), output.logits[:, -1]

    def keep(self, rows: list[int]) -> None:
        keep = torch.tensor(rows, dtype=torch.long, device=self.attention.device)
        self.cache.batch_select_indices(keep)
        self.attention, self.next_position = self.attention[keep], self.next_position[keep]

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        device = self.attention.device
        self.attention = torch.cat(
            [self.attention, self.attention.new_ones((len(tokens), 1))], dim=1
        )
        output = self.backend.model(
            input_ids=tokens.to(device).view(-1, 1),
            attention_mask=self.attention,
            position_ids=self.next_position.view(-1, 1),
            use_cache=True,
            logits_to_keep=1,
            **{self.backend._cache_kwarg: self.cache},
        )
        self.next_position = self.next_position + 1
        return output.logits[:, -1]


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


def _row_generator(seed: int | None) -> torch.Generator:
    generator = torch.Generator(device="cpu")
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def _sample(
    logits: torch.Tensor,
    temperatures: torch.Tensor,
    top_ps: torch.Tensor,
    generators: list[torch.Generator],
) -> torch.Tensor:
    """Draw one token per row: greedy where temperature is 0, else top-p sampling.

    ``logits`` [B, V] float32 on CPU. Inverse-CDF sampling with one uniform per row from that
    row's generator, so the draw is the same on any device and in any batch.
    """
    greedy = logits.argmax(dim=-1)
    sampling = temperatures > 0
    if not bool(sampling.any()):
        return greedy
    rows = sampling.nonzero().flatten()
    scaled = logits[rows] / temperatures[rows, None]
    probs = torch.softmax(scaled, dim=-1)
    uniforms = torch.cat([torch.rand(1, generator=generators[int(r)]) for r in rows])
    # Per row, not per batch: a row's token must not depend on its neighbours' top_p.
    full = top_ps[rows] >= 1
    out = greedy.clone()
    if bool(full.any()):
        out[rows[full]] = _invert_cdf(probs[full], uniforms[full])
    if not bool(full.all()):
        nucleus = ~full
        out[rows[nucleus]] = _invert_nucleus_cdf(
            probs[nucleus], uniforms[nucleus], top_ps[rows[nucleus]]
        )
    return out


def _invert_cdf(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Token ids [B] drawn by inverting each row's CDF in vocabulary order (no sort needed)."""
    cumulative = probs.cumsum(dim=-1)
    picks = torch.searchsorted(cumulative, (uniforms * cumulative[:, -1])[:, None])
    return picks.flatten().clamp(max=probs.shape[-1] - 1)


def _invert_nucleus_cdf(
    probs: torch.Tensor, uniforms: torch.Tensor, top_ps: torch.Tensor
) -> torch.Tensor:
    """Token ids [B] drawn from each row's top-p nucleus (probs [B, V], uniforms and top_ps [B])."""
    sorted_probs, sorted_ids = probs.sort(dim=-1, descending=True, stable=True)
    cumulative = sorted_probs.cumsum(dim=-1)
    # Keep a token while the mass before it is below top_p (the top token always survives).
    keep = (cumulative - sorted_probs) < top_ps[:, None]
    sorted_probs = sorted_probs * keep
    cumulative = sorted_probs.cumsum(dim=-1)
    targets = uniforms * cumulative[:, -1]
    picks = torch.searchsorted(cumulative, targets[:, None]).clamp(max=probs.shape[-1] - 1)
    # searchsorted may land on a zeroed (dropped) slot only at the very end; step back to a kept one.
    picks = torch.minimum(picks, keep.sum(dim=-1, keepdim=True) - 1)
    return sorted_ids.gather(1, picks).flatten()
