"""The LLM judge: a prompted model behind any generation backend labels steps and outcomes.

For a batch of trajectories it builds every judge request (one per step for process labels, one
per trajectory for the outcome), answers what it can from the on-disk cache, sends the rest to
the backend in large lists (the OpenAI-compatible backend keeps many in flight; the local one
batches them on the model), and parses the verdicts.

- An unparseable reply is asked again up to ``retries`` times (sampled at ``retry_temperature``
  when the first try was greedy, since greedy would repeat itself); then the label is recorded as
  unknown (``verdict=None``), which no filter counts as GOOD.
- A request the backend fails on (after its own retries) is unknown too, with the error as the
  explanation, and is not cached, so a rerun asks again.
- ``samples > 1`` asks k samples per request and takes the majority of the parsed verdicts; a tie,
  or no parsed sample, is unknown.
- Outcome of a trajectory without a final answer: NO, without asking.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from swirl.backends import SamplingParams, derive_seed
from swirl.backends.base import Message
from swirl.judge.base import Mode, check_pair, wants_outcome, wants_process, with_labels
from swirl.judge.cache import JudgeCache, cache_key
from swirl.judge.prompts import (
    MAX_QUOTED_CHARS,
    OUTCOME_VERDICTS,
    PROCESS_VERDICTS,
    Messages,
    outcome_messages,
    process_messages,
)
from swirl.judge.verdict import parse_verdict
from swirl.schema import Example, Judgment, Trajectory

log = logging.getLogger(__name__)

# Judge replies kept in a Judgment's explanation (the reasoning; long rambles are cut).
MAX_EXPLANATION_CHARS = 2000


class ChatBackend(Protocol):
    """All the judge needs of a backend (every :class:`~swirl.backends.GenerationBackend` has it):
    the reply text per conversation, in order, raising if the call fails."""

    def chat(
        self, conversations: Sequence[Sequence[Message]], params: SamplingParams
    ) -> list[str]: ...


@dataclass
class _Request:
    """One judgment to make: where its label goes, its prompt, and what came back."""

    trajectory: int
    step: int | None  # None: the outcome label
    messages: Messages
    words: tuple[str, str]
    replies: list[str | None] = field(default_factory=list)  # per sample: last reply or None
    votes: list[bool | None] = field(default_factory=list)  # per sample
    error: str | None = None


@dataclass
class JudgeStats:
    """Counts over the life of one :class:`LLMJudge`."""

    requests: int = 0  # judgments made (each with ``samples`` samples)
    backend_calls: int = 0  # prompts sent to the backend (retries included)
    cache_hits: int = 0
    unparseable: int = 0  # replies without a verdict word (before retries)
    failed: int = 0  # backend errors (requests, not calls)
    unknown: int = 0  # labels recorded as unknown


class LLMJudge:
    """Judge with a model behind ``backend`` (see the module docstring).

    ``name`` is recorded in every Judgment (default ``"llm:<backend.name>"``). ``temperature`` is
    the sampling temperature of every sample (0: greedy); majority voting (``samples > 1``) needs
    it above 0. ``chunk_size`` bounds the prompts handed to the backend in one call.
    """

    def __init__(
        self,
        backend: ChatBackend,
        *,
        name: str | None = None,
        cache: JudgeCache | None = None,
        retries: int = 2,
        samples: int = 1,
        temperature: float = 0.0,
        retry_temperature: float = 0.7,
        max_new_tokens: int = 512,
        max_quoted_chars: int = MAX_QUOTED_CHARS,
        chunk_size: int = 256,
        seed: int = 0,
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        if samples > 1 and temperature <= 0:
            raise ValueError("a majority vote over samples needs temperature > 0")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.backend = backend
        self.name = name or f"llm:{getattr(backend, 'name', 'model')}"
        self.cache = cache
        self.retries = retries
        self.samples = samples
        self.temperature = temperature
        self.retry_temperature = retry_temperature
        self.max_new_tokens = max_new_tokens
        self.max_quoted_chars = max_quoted_chars
        self.chunk_size = chunk_size
        self.seed = seed
        self.stats = JudgeStats()

    # -- public -------------------------------------------------------------------------------

    def judge(self, batch: Sequence[tuple[Example, Trajectory]], mode: Mode) -> list[Trajectory]:
        requests: list[_Request] = []
        outcomes: dict[int, Judgment] = {}
        for position, (example, trajectory) in enumerate(batch):
            check_pair(example, trajectory)
            if wants_process(mode):
                for index in range(len(trajectory.steps)):
                    messages = process_messages(
                        example.question,
                        trajectory.steps,
                        index,
                        trajectory.task,
                        max_quoted_chars=self.max_quoted_chars,
                    )
                    requests.append(_Request(position, index, messages, PROCESS_VERDICTS))
            if wants_outcome(mode):
                if trajectory.final_answer is None:
                    outcomes[position] = Judgment(
                        judge=self.name,
                        verdict=False,
                        explanation=f"no final answer ({trajectory.termination}); not asked",
                    )
                else:
                    messages = outcome_messages(
                        example.question, example.answers, trajectory.final_answer, trajectory.task
                    )
                    requests.append(_Request(position, None, messages, OUTCOME_VERDICTS))
        self._resolve(requests)

        process: list[list[Judgment]] = [[] for _ in batch]
        for request in requests:
            label = self._label(request)
            if request.step is None:
                outcomes[request.trajectory] = label
            else:
                process[request.trajectory].append(label)
        return [
            with_labels(
                trajectory,
                process=process[position] if wants_process(mode) else None,
                outcome=outcomes.get(position) if wants_outcome(mode) else None,
            )
            for position, (_, trajectory) in enumerate(batch)
        ]

    # -- sampling, caching, retrying ------------------------------------------------------------

    def _params(self, sample: int, attempt: int) -> SamplingParams:
        temperature = self.temperature
        if attempt > 0:
            temperature = max(temperature, self.retry_temperature)
        return SamplingParams(
            max_new_tokens=self.max_new_tokens,
            temperature=temperature,
            seed=derive_seed(self.seed, sample, attempt),
            stop_at_action=False,
        )

    def _settings(self, params: SamplingParams) -> str:
        """What besides the prompt shapes the reply (part of the cache key)."""
        return f"max_new_tokens={params.max_new_tokens};temperature={params.temperature}"

    def _resolve(self, requests: list[_Request]) -> None:
        """Fill ``replies``/``votes`` of every request for every sample."""
        self.stats.requests += len(requests)
        for request in requests:
            request.replies = [None] * self.samples
            request.votes = [None] * self.samples
        for sample in range(self.samples):
            pending = list(requests)
            for attempt in range(self.retries + 1):
                if not pending:
                    break
                replies = self._ask([r.messages for r in pending], sample, attempt)
                still: list[_Request] = []
                for request, reply in zip(pending, replies, strict=True):
                    if isinstance(reply, Exception):
                        if request.error is None:
                            self.stats.failed += 1
                        request.error = f"{type(reply).__name__}: {reply}"
                        continue  # the backend already retried; do not hammer it again
                    request.replies[sample] = reply
                    verdict = parse_verdict(reply, *request.words)
                    if verdict is None:
                        self.stats.unparseable += 1
                        still.append(request)
                    else:
                        request.votes[sample] = verdict
                pending = still

    def _ask(self, prompts: list[Messages], sample: int, attempt: int) -> list[str | Exception]:
        """Replies for ``prompts`` (cached ones from the cache), or the exception per failure."""
        params = self._params(sample, attempt)
        settings = self._settings(params)
        keys = [cache_key(self.name, settings, p, sample, attempt) for p in prompts]
        known: dict[str, str | Exception] = {}
        if self.cache is not None:
            known.update(self.cache.get_many(keys))
            self.stats.cache_hits += len(known)
        # Identical prompts in one batch are asked once.
        missing = list(dict.fromkeys(key for key in keys if key not in known))
        prompt_of = dict(zip(keys, prompts, strict=True))
        for start in range(0, len(missing), self.chunk_size):
            chunk = missing[start : start + self.chunk_size]
            answers = self._call(
                [prompt_of[key] for key in chunk],
                params,
            )
            fresh = []
            for key, answer in zip(chunk, answers, strict=True):
                known[key] = answer
                if not isinstance(answer, Exception):
                    fresh.append((key, self.name, sample, attempt, answer))
            if self.cache is not None and fresh:
                self.cache.put_many(fresh)
        return [known[key] for key in keys]

    def _call(self, prompts: list[Messages], params: SamplingParams) -> list[str | Exception]:
        """One backend call for ``prompts``. A backend answers a list all or nothing, so when a
        call fails its halves are asked apart (down to single prompts): one bad request costs
        about twice the list, not every neighbour's label."""
        self.stats.backend_calls += len(prompts)
        try:
            return list(self.backend.chat(prompts, params))
        except Exception as error:  # any backend failure becomes an unknown label, never a crash
            if len(prompts) == 1:
                log.warning("judge request failed: %s", error)
                return [error]
        middle = len(prompts) // 2
        return self._call(prompts[:middle], params) + self._call(prompts[middle:], params)

    # -- votes to labels ----------------------------------------------------------------------

    def _label(self, request: _Request) -> Judgment:
        positive, negative = request.words
        counts = Counter(request.votes)
        yes, no, unknown = counts[True], counts[False], counts[None]
        verdict = True if yes > no else False if no > yes else None
        if verdict is None:
            self.stats.unknown += 1
        if request.error is not None and not yes and not no:
            explanation = f"judge request failed: {request.error}"
        else:
            # The reasoning of a sample that agrees with the label (the first reply otherwise).
            agreeing = [
                reply
                for reply, vote in zip(request.replies, request.votes, strict=True)
                if reply is not None and vote == verdict
            ]
            replies = [reply for reply in request.replies if reply is not None]
            explanation = (agreeing or replies or [""])[0][:MAX_EXPLANATION_CHARS]
            if verdict is None and not replies:
                explanation = "no reply"
            elif verdict is None:
                explanation = f"no verdict could be read: {explanation}"
            if self.samples > 1:
                tally = f"votes: {yes} {positive}, {no} {negative}, {unknown} unknown"
                explanation = f"{tally}\n{explanation}"
        return Judgment(judge=self.name, verdict=verdict, explanation=explanation)
