"""Continuous batching: queued prompts enter the batch between decode steps, as rows finish.

A :class:`DecodeStream` drives one engine (the fast engine or the reference one, see
:class:`Engine`): it admits queued requests into free rows, samples one token per live row
(:func:`swirl.backends.sampling.sample`, each row with its own seeded generator), stops a row on
an EOS id, on its token budget, or right after the token that completes a closing action tag,
and yields each finished row as soon as it stops. The consumer may submit new requests while it
holds a result (an episode's next turn, once its tool has run): they are prefilled while the
other rows take their next step, into the slot the finished row left, and draw their first token
in the same round as the others draw their next.

A row's sampled tokens depend only on its own prompt, parameters and seed: the uniforms come
from its own generator, one per step, whoever shares the batch (its logits may differ in the last
float bits, as batched products round differently with the batch's shape).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import torch

from swirl.backends.base import Completion, FinishReason, SamplingParams
from swirl.backends.sampling import row_generator, sample
from swirl.backends.stopping import ActionStopDetector

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


class Engine(Protocol):
    """What computes the logits for a :class:`DecodeStream`.

    ``continuous``: rows can be admitted while others decode (else only into an empty batch).
    ``max_rows``: the most rows it decodes together. ``prefill_passes``: the tokens of each
    prefill pass it ran so far.
    """

    continuous: bool
    max_rows: int
    prefill_passes: list[int]

    def begin(self, prompts: Sequence[Sequence[int]]) -> None:
        """No row is live and these prompts are queued (e.g. read changed weights)."""
        ...

    def admit(self, requests: Sequence[tuple[Sequence[int], int]]) -> tuple[list, torch.Tensor]:
        """Admit a leading part of ``requests`` ((prompt, room for new tokens)); return one
        handle per admitted row and their next-token logits [k, V]."""
        ...

    def step(self, rows: list, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per row (``tokens`` [R], rows by handle); return logits [R, V]."""
        ...

    def release(self, row: object) -> None:
        """The row finished."""
        ...


@dataclass
class GenerationStats:
    """What the engines computed: the live rows of each decode step, and the tokens of each
    prefill pass (the products a roofline counts, see ``benches/bench_generation.py``)."""

    decode_rows: list[int] = field(default_factory=list)
    prefill_passes: list[int] = field(default_factory=list)

    @property
    def mean_rows(self) -> float:
        return sum(self.decode_rows) / max(len(self.decode_rows), 1)

    @property
    def prefill_tokens(self) -> int:
        return sum(self.prefill_passes)


@dataclass
class _Request:
    key: Hashable
    prompt: Sequence[int]
    params: SamplingParams
    budget: int


@dataclass
class _Row:
    request: _Request
    handle: object
    generator: torch.Generator
    detector: ActionStopDetector | None
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)


class DecodeStream:
    """Requests in (:meth:`submit`), completions out as they finish (iterate).

    Iterating runs the engine until no request is queued or decoding; it yields ``(key,
    Completion)`` pairs, and may be resumed after new submissions by iterating again.
    """

    def __init__(
        self,
        engine: Engine,
        tokenizer: PreTrainedTokenizerBase,
        *,
        eos_ids: frozenset[int],
        context_length: int,
        stats: GenerationStats | None = None,
    ) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids
        self.context_length = context_length
        self.stats = stats if stats is not None else GenerationStats()
        self._queue: deque[_Request] = deque()
        self._done: deque[tuple[Hashable, Completion]] = deque()

    def submit(self, prompt: Sequence[int], params: SamplingParams, key: Hashable) -> None:
        """Queue one prompt; its completion comes out under ``key``. A seed in ``params`` is
        used as it is (one stream of draws per request)."""
        if not prompt:
            raise ValueError(f"the prompt of request {key!r} is empty")
        budget = min(params.max_new_tokens, max(self.context_length - len(prompt), 0))
        request = _Request(key, prompt, params, budget)
        if budget == 0:  # the prompt fills the context: nothing to sample
            self._done.append((key, self._completion(request, [], [], "length")))
        else:
            self._queue.append(request)

    def __iter__(self) -> Iterator[tuple[Hashable, Completion]]:
        live: list[_Row] = []
        try:
            yield from self._run(live)
        finally:  # an iteration left early (or failing) frees its rows' slots
            for row in live:
                self.engine.release(row.handle)

    def _run(self, live: list[_Row]) -> Iterator[tuple[Hashable, Completion]]:
        """The loop of :meth:`__iter__`; ``live`` holds the rows decoding, updated in place."""
        engine = self.engine
        logits = torch.empty(0)
        while True:
            while self._done:
                yield self._done.popleft()
            if self._queue and (engine.continuous or not live):
                passes = len(engine.prefill_passes)
                if not live:
                    engine.begin([request.prompt for request in self._queue])
                admitted, first = self._admit(len(live))
                self.stats.prefill_passes += engine.prefill_passes[passes:]
                live += admitted
                logits = first if logits.numel() == 0 else torch.cat([logits, first])
            if not live:
                if self._done:
                    continue
                if self._queue:
                    raise RuntimeError("the engine admitted no queued request into an empty batch")
                return
            tokens, logprobs = sample(
                logits.float().cpu(),
                torch.tensor([row.request.params.temperature for row in live]),
                torch.tensor([row.request.params.top_p for row in live]),
                [row.generator for row in live],
            )
            going: list[int] = []
            for index, (row, token, logprob) in enumerate(
                zip(live, tokens.tolist(), logprobs.tolist(), strict=True)
            ):
                row.tokens.append(token)
                row.logprobs.append(logprob)
                reason = self._finish_reason(row, token)
                if reason is None:
                    going.append(index)
                else:
                    engine.release(row.handle)
                    self._done.append((row.request.key, self._finished(row, reason)))
            live[:] = [live[index] for index in going]
            logits = torch.empty(0)
            # Finished rows go out first: a request the consumer submits for them is queued
            # before the next step.
            while self._done:
                yield self._done.popleft()
            if live:
                self.stats.decode_rows.append(len(live))
                logits = engine.step([row.handle for row in live], tokens[going])

    def _admit(self, live: int) -> tuple[list[_Row], torch.Tensor]:
        engine = self.engine
        head = itertools.islice(self._queue, max(engine.max_rows - live, 0))
        handles, logits = engine.admit([(request.prompt, request.budget) for request in head])
        rows = []
        for handle in handles:
            request = self._queue.popleft()
            detector = ActionStopDetector(self.tokenizer) if request.params.stop_at_action else None
            rows.append(_Row(request, handle, row_generator(request.params.seed), detector))
        return rows, logits

    def _finish_reason(self, row: _Row, token: int) -> FinishReason | None:
        if token in self.eos_ids:
            return "eos"
        if row.detector is not None and row.detector.feed(token):
            return "action"
        if len(row.tokens) >= row.request.budget:
            return "length"
        return None

    def _finished(self, row: _Row, reason: FinishReason) -> Completion:
        return self._completion(row.request, row.tokens, row.logprobs, reason)

    def _completion(
        self, request: _Request, tokens: list[int], logprobs: list[float], reason: FinishReason
    ) -> Completion:
        return Completion(
            token_ids=tokens,
            text=self.tokenizer.decode(tokens, skip_special_tokens=False),
            finish_reason=reason,
            logprobs=logprobs,
        )
