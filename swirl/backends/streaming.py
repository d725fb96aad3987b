"""Streams of completions: submit prompts while others are being generated.

A backend with a ``stream()`` method (:class:`swirl.backends.hf.HFBackend`) batches continuously:
a prompt submitted while the stream runs joins the batch at the next decode step. Any other
:class:`~swirl.backends.base.GenerationBackend` is wrapped in :class:`RoundStream`, which sends
what was submitted as one ``generate`` call per round, the next round being what the consumer
submitted while reading the previous one.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from typing import Protocol

from swirl.backends.base import Completion, GenerationBackend, SamplingParams


class CompletionStream(Protocol):
    """``submit`` prompts, iterate for ``(key, Completion)`` pairs as they finish; submitting
    during the iteration is allowed (the iteration then goes on until those finish too)."""

    def submit(self, prompt: Sequence[int], params: SamplingParams, key: Hashable) -> None: ...

    def __iter__(self) -> Iterator[tuple[Hashable, Completion]]: ...


class RoundStream:
    """A stream over a backend that only has ``generate``: one call per round of submissions."""

    def __init__(self, backend: GenerationBackend) -> None:
        self.backend = backend
        self._pending: list[tuple[Sequence[int], SamplingParams, Hashable]] = []

    def submit(self, prompt: Sequence[int], params: SamplingParams, key: Hashable) -> None:
        self._pending.append((prompt, params, key))

    def __iter__(self) -> Iterator[tuple[Hashable, Completion]]:
        while self._pending:
            batch, self._pending = self._pending, []
            completions = self.backend.generate([p for p, _, _ in batch], [s for _, s, _ in batch])
            for (_, _, key), completion in zip(batch, completions, strict=True):
                yield key, completion


def open_stream(backend: GenerationBackend) -> CompletionStream:
    """The backend's own stream if it has one, else a :class:`RoundStream` over it."""
    stream = getattr(backend, "stream", None)
    return stream() if callable(stream) else RoundStream(backend)
