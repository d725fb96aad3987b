"""Choosing a judge from the command line: ``reference``, ``hf:PATH`` or ``openai:URL[#model]``.

``--judge`` defaults to ``$SWIRL_JUDGE``, and to the reference judge only when neither is set.
The LLM judges share the on-disk cache (``--cache``, default ``<swirl cache>/judge.sqlite``).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from swirl.judge.base import Judge
from swirl.judge.reference import REFERENCE_JUDGE, ReferenceJudge

if TYPE_CHECKING:
    from swirl.backends.base import GenerationBackend, Message, SamplingParams
    from swirl.judge.llm import LLMJudge

JUDGE_ENV = "SWIRL_JUDGE"


@dataclass(frozen=True)
class JudgeSpec:
    """A parsed ``--judge``: its kind, the model path or server URL, and the served model name."""

    kind: Literal["reference", "hf", "openai"]
    target: str = ""
    model: str | None = None

    @property
    def name(self) -> str:
        """The name every Judgment of this judge records (and the cache's model key)."""
        if self.kind == "reference":
            return REFERENCE_JUDGE
        if self.kind == "hf":
            from swirl.model import EMBEDDED_MODEL

            return f"hf:{self.target or EMBEDDED_MODEL}"
        return f"openai:{self.target}" + (f"#{self.model}" if self.model else "")


def parse_judge_spec(text: str) -> JudgeSpec:
    """Parse ``reference``, ``hf:`` (the embedded model), ``hf:PATH`` or ``openai:URL[#model]``."""
    text = text.strip()
    if text == REFERENCE_JUDGE:
        return JudgeSpec("reference")
    kind, colon, rest = text.partition(":")
    if colon and kind == "hf":
        return JudgeSpec("hf", rest)
    if colon and kind == "openai":
        url, _, model = rest.partition("#")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"--judge {text}: expected openai:http(s)://HOST[:PORT]/v1[#model]")
        return JudgeSpec("openai", url, model or None)
    raise ValueError(
        f"--judge {text!r}: expected reference, hf:PATH (hf: for the embedded model) "
        "or openai:URL[#model]"
    )


def add_judge_arguments(parser: argparse.ArgumentParser) -> None:
    """The judge options shared by ``swirl judge`` and ``swirl eval``."""
    parser.add_argument(
        "--judge",
        default=None,
        metavar="SPEC",
        help=f"reference | hf:PATH (hf: = embedded model) | openai:URL[#model]; default "
        f"${JUDGE_ENV}, else reference (gold annotations, no model)",
    )
    group = parser.add_argument_group("LLM judge")
    group.add_argument(
        "--judge-cache",
        default=None,
        metavar="PATH",
        help="SQLite cache of judge replies (default: <swirl cache>/judge.sqlite)",
    )
    group.add_argument("--no-judge-cache", action="store_true", help="do not read or write it")
    group.add_argument(
        "--judge-retries", type=int, default=2, help="re-asks of an unparseable reply (default 2)"
    )
    group.add_argument(
        "--judge-samples", type=int, default=1, help="majority vote over k samples (default 1)"
    )
    group.add_argument(
        "--judge-temperature",
        type=float,
        default=None,
        help="0 = greedy (default; 0.7 when --judge-samples > 1)",
    )
    group.add_argument(
        "--judge-max-tokens", type=int, default=512, help="reply length cap (default 512)"
    )


def judge_spec_from_args(args: argparse.Namespace) -> JudgeSpec:
    return parse_judge_spec(args.judge or os.environ.get(JUDGE_ENV) or REFERENCE_JUDGE)


def judge_from_spec(text: str) -> Judge:
    """The judge a spec string names (``reference``, ``hf:PATH``, ``openai:URL[#model]``), with the
    default options of :func:`add_judge_arguments` (the command line's defaults are the one place
    they are written)."""
    parser = argparse.ArgumentParser(add_help=False)
    add_judge_arguments(parser)
    args = parser.parse_args(["--judge", text])
    return load_judge(judge_spec_from_args(args), args)


def load_judge(spec: JudgeSpec, args: argparse.Namespace) -> Judge:
    """Build the judge ``spec`` names with the options of :func:`add_judge_arguments`."""
    if spec.kind == "reference":
        return ReferenceJudge()
    return _llm_judge(spec, args)


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


def _llm_judge(spec: JudgeSpec, args: argparse.Namespace) -> LLMJudge:
    from swirl.backends.factory import make_backend
    from swirl.judge.cache import JudgeCache
    from swirl.judge.llm import LLMJudge
    from swirl.model import cache_dir

    def build() -> GenerationBackend:
        if spec.kind == "hf":
            return make_backend("local", model=spec.target or None)
        return make_backend("openai", model=spec.model, base_url=spec.target)

    cache = None
    if not args.no_judge_cache:
        cache = JudgeCache(args.judge_cache or cache_dir() / "judge.sqlite")
    temperature = args.judge_temperature
    if temperature is None:
        temperature = 0.7 if args.judge_samples > 1 else 0.0
    return LLMJudge(
        LazyBackend(build),
        name=spec.name,
        cache=cache,
        retries=args.judge_retries,
        samples=args.judge_samples,
        temperature=temperature,
        max_new_tokens=args.judge_max_tokens,
    )
