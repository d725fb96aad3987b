"""Building the judge that :class:`~swirl.settings.JudgeSettings` name: the rule-based judges
from gold annotations (``reference``; ``grounded``, the paper's process judge without a model),
or an LLM judge over the embedded or a local model (``hf:PATH``) or any
OpenAI-compatible server (``openai:URL[#model]``), with its cache, retries and votes.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from swirl.judge.base import Judge
from swirl.judge.grounded import GROUNDED_JUDGE, GroundedJudge
from swirl.judge.reference import REFERENCE_JUDGE, ReferenceJudge
from swirl.settings import JudgeSettings

if TYPE_CHECKING:
    from swirl.backends.base import GenerationBackend, Message, SamplingParams
    from swirl.judge.llm import LLMJudge


@dataclass(frozen=True)
class JudgeSpec:
    """A parsed ``--judge``: its kind, the model path or server URL, and the served model name."""

    kind: Literal["reference", "grounded", "hf", "openai"]
    target: str = ""
    model: str | None = None

    @property
    def name(self) -> str:
        """The name every Judgment of this judge records (and the cache's model key)."""
        if self.kind == "reference":
            return REFERENCE_JUDGE
        if self.kind == "grounded":
            return GROUNDED_JUDGE
        if self.kind == "hf":
            from swirl.model import EMBEDDED_MODEL

            return f"hf:{self.target or EMBEDDED_MODEL}"
        return f"openai:{self.target}" + (f"#{self.model}" if self.model else "")


def parse_judge_spec(text: str) -> JudgeSpec:
    """Parse ``reference``, ``grounded``, ``hf:`` (the embedded model), ``hf:PATH`` or
    ``openai:URL[#model]``."""
    text = text.strip()
    if text == REFERENCE_JUDGE:
        return JudgeSpec("reference")
    if text == GROUNDED_JUDGE:
        return JudgeSpec("grounded")
    kind, colon, rest = text.partition(":")
    if colon and kind == "hf":
        return JudgeSpec("hf", rest)
    if colon and kind == "openai":
        url, _, model = rest.partition("#")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"--judge {text}: expected openai:http(s)://HOST[:PORT]/v1[#model]")
        return JudgeSpec("openai", url, model or None)
    raise ValueError(
        f"--judge {text!r}: expected reference, grounded, hf:PATH (hf: for the embedded model) "
        "or openai:URL[#model]"
    )


def add_judge_arguments(parser: argparse.ArgumentParser) -> None:
    """The judge flags (from :class:`JudgeSettings`) of the commands that judge."""
    from swirl.flags import add_struct_flags

    add_struct_flags(parser.add_argument_group("judge"), JudgeSettings)


def load_judge(settings: JudgeSettings) -> Judge:
    """Build the judge ``settings`` name (their spec parsed first, so a bad one fails early)."""
    spec = parse_judge_spec(settings.spec)
    if spec.kind == "reference":
        return ReferenceJudge()
    if spec.kind == "grounded":
        return GroundedJudge()
    return _llm_judge(spec, settings)


class LazyBackend:
    """A :class:`~swirl.judge.llm.ChatBackend` that builds the real backend on the first ``chat`` call, so a run the cache answers entirely
    loads no model and contacts no server."""

    def __init__(self, build: Callable[[], GenerationBackend]) -> None:
        self._build = build
        self._backend: GenerationBackend | None = None

    def chat(self, conversations: Sequence[Sequence[Message]], params: SamplingParams) -> list[str]:
        if self._backend is None:
            self._backend = self._build()
        return self._backend.chat(conversations, params)


def _llm_judge(spec: JudgeSpec, settings: JudgeSettings) -> LLMJudge:
    from swirl.backends.factory import make_backend
    from swirl.judge.cache import JudgeCache
    from swirl.judge.llm import LLMJudge
    from swirl.model import cache_dir

    def build() -> GenerationBackend:
        if spec.kind == "hf":
            return make_backend("local", model=spec.target or None)
        return make_backend("openai", model=spec.model, base_url=spec.target)

    cache = None
    if not settings.no_judge_cache:
        cache = JudgeCache(settings.judge_cache or cache_dir() / "judge.sqlite")
    temperature = settings.judge_temperature
    if temperature is None:
        temperature = 0.7 if settings.judge_samples > 1 else 0.0
    return LLMJudge(
        LazyBackend(build),
        name=spec.name,
        cache=cache,
        retries=settings.judge_retries,
        samples=settings.judge_samples,
        temperature=temperature,
        max_new_tokens=settings.judge_max_tokens,
    )
