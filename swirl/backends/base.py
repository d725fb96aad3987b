"""The contract between swirl and a text generator: token ids in, sampled token ids out.

Every backend (local transformers, a remote OpenAI-compatible server) implements
:class:`GenerationBackend`. The environment loop only talks token ids, so the exact ids a model
sampled can be recorded and trained on without re-tokenising; ``chat`` is the text-level entry
point the judge uses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import msgspec

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

FinishReason = Literal["action", "eos", "length"]
Message = Mapping[str, str]

_SEED_MODULUS = 2**31 - 1  # every server accepts a 31-bit seed (llama.cpp takes uint32)


class SamplingParams(msgspec.Struct, frozen=True, kw_only=True):
    """How to sample one completion.

    ``temperature == 0`` is greedy decoding. ``top_p`` keeps the smallest set of most likely tokens
    whose probability reaches ``top_p``. ``seed`` makes sampling reproducible (None: fresh
    randomness). ``stop_at_action`` ends a completion right after the token that completes the
    first closing action tag (``</search_query>``, ``</math_exp>``, ``</answer>``).
    """

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop_at_action: bool = True

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


class Completion(msgspec.Struct, frozen=True, kw_only=True):
    """One sampled continuation.

    ``token_ids`` are the sampled ids exactly (ending with the EOS id when ``finish_reason`` is
    ``"eos"``, with the token that completed the closing tag when it is ``"action"``); ``text`` is
    their decoding with special tokens kept. ``exact_token_ids`` is False only when a remote
    server returned text without ids and the ids were re-tokenised locally (see
    ``swirl.backends.openai``).

    ``logprobs`` (``[len(token_ids)]``, natural log) is the sampler's own log-probability of each
    sampled token under the distribution it drew from: ``softmax(logits / temperature)``
    renormalised to the top-p nucleus when ``top_p < 1``, and ``softmax(logits)`` when greedy.
    None when the backend cannot report it (a server that returns none, re-tokenised ids). The
    trainer compares it with the learner's own log-probs to see sampler/learner drift.
    """

    token_ids: list[int]
    text: str
    finish_reason: FinishReason
    exact_token_ids: bool = True
    logprobs: list[float] | None = None

    def __post_init__(self) -> None:
        if self.logprobs is not None and len(self.logprobs) != len(self.token_ids):
            raise ValueError(
                f"a completion has {len(self.token_ids)} token ids but {len(self.logprobs)} "
                "log-probs"
            )


@runtime_checkable
class GenerationBackend(Protocol):
    """A sampler of continuations for batches of prompts.

    ``name`` identifies the model (recorded in trajectories); ``tokenizer`` is the model's
    tokenizer (prompts are built and observations tokenised with it); ``context_length`` is the
    most tokens (prompt + completion) one sequence may hold.
    """

    name: str
    tokenizer: PreTrainedTokenizerBase
    context_length: int

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        params: SamplingParams | Sequence[SamplingParams],
    ) -> list[Completion]:
        """One completion per prompt, in order. ``params`` is shared by all prompts (row ``i``
        then samples with seed ``derive_seed(params.seed, i)``) or given per prompt."""
        ...

    def chat(self, conversations: Sequence[Sequence[Message]], params: SamplingParams) -> list[str]:
        """The assistant's reply text to each conversation (``[{"role", "content"}, ...]``),
        with the model's chat template applied; special tokens removed, whitespace stripped."""
        ...


def derive_seed(*parts: object) -> int:
    """A stable 31-bit seed from any printable parts (same parts -> same seed, on any machine)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % _SEED_MODULUS


def params_per_prompt(
    params: SamplingParams | Sequence[SamplingParams], count: int
) -> list[SamplingParams]:
    """Expand shared params to one per prompt; a shared seed becomes a distinct seed per row, so
    identical prompts in one batch still get independent samples."""
    if isinstance(params, SamplingParams):
        if params.seed is None:
            return [params] * count
        return [
            msgspec.structs.replace(params, seed=derive_seed(params.seed, i)) for i in range(count)
        ]
    if len(params) != count:
        raise ValueError(f"got {len(params)} SamplingParams for {count} prompts")
    return list(params)
