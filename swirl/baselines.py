"""Model-free baselines: what the form of a question alone scores, on the same questions as the
models (``swirl eval`` summaries and study reports).

- Guess among options: a question that offers its candidate answers ("Who is older, A or B?"
  offers A and B; "Were A and B born in the same city?" offers yes and no) is answered with a
  uniformly random option (the expected score: the mean over its options), always the first, or
  always the last option. A question offering none gets no answer (score 0).
- Per-kind majority: the most frequent training answer of each question kind
  (``metadata["type"]``; one kind when the dataset has none), given to every question of that
  kind. Without training questions it is not computed.

Scores are exact match and F1 (:mod:`swirl.metrics`), overall and per stratum
(:mod:`swirl.data.strata`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from statistics import fmean

import msgspec

from swirl.data.strata import ALL, stratum_of
from swirl.metrics import exact_match, f1, normalize_answer
from swirl.schema import Example

# A question opening with one of these is a yes/no question (HotPotQA's and demo-qa's style).
_YES_NO_OPENERS = frozenset(
    "is are was were do does did has have had can could will would should".split()
)
# "..., A or B?": the two names after the question's last comma.
_TWO_OPTIONS = re.compile(r",\s*([^,]+?)\s+or\s+([^,]+?)\s*\?\s*$")


def options(question: str) -> list[str]:
    """The answers ``question`` offers to choose from, in order; ``[]`` when it offers none."""
    words = question.split()
    if words and words[0].casefold() in _YES_NO_OPENERS:
        return ["yes", "no"]
    match = _TWO_OPTIONS.search(question)
    return [match.group(1), match.group(2)] if match else []


class BaselineScore(msgspec.Struct, kw_only=True):
    """One baseline on a set of questions: mean exact match and F1 over all of them (a question
    it gives no answer to scores 0), how many it answered, and exact match per stratum."""

    name: str
    description: str
    questions: int
    answered: int
    exact_match: float
    f1: float
    by_stratum: dict[str, float]  # stratum -> mean exact match


# A baseline's expected (exact match, F1) on one question; None: it gives no answer.
Scorer = Callable[[Example], tuple[float, float] | None]


def _expected(predictions: Sequence[str], example: Example) -> tuple[float, float] | None:
    """Mean exact match and F1 of a uniformly random choice among ``predictions``."""
    if not predictions:
        return None
    return (
        fmean(float(exact_match(p, example.answers)) for p in predictions),
        fmean(f1(p, example.answers)[0] for p in predictions),
    )


def kind_of(example: Example) -> str:
    return str(example.metadata.get("type", ALL))


def majority_answers(training: Sequence[Example]) -> dict[str, str]:
    """Kind -> its most frequent training answer (compared normalised; ties: the first seen)."""
    counts: dict[str, Counter[str]] = {}
    surface: dict[str, str] = {}
    for example in training:
        if not example.answers:
            continue
        key = normalize_answer(example.answers[0])
        surface.setdefault(key, example.answers[0])
        counts.setdefault(kind_of(example), Counter())[key] += 1
    return {kind: surface[c.most_common(1)[0][0]] for kind, c in counts.items()}


def _score(name: str, description: str, scorer: Scorer, examples: Sequence[Example]):
    results = [scorer(e) for e in examples]
    by_stratum: dict[str, list[float]] = {}
    for example, result in zip(examples, results, strict=True):
        by_stratum.setdefault(stratum_of(example), []).append(result[0] if result else 0.0)
    return BaselineScore(
        name=name,
        description=description,
        questions=len(examples),
        answered=sum(r is not None for r in results),
        exact_match=fmean(r[0] if r else 0.0 for r in results) if results else 0.0,
        f1=fmean(r[1] if r else 0.0 for r in results) if results else 0.0,
        by_stratum={s: fmean(v) for s, v in sorted(by_stratum.items())},
    )


def baselines(
    examples: Sequence[Example], training: Sequence[Example] | None = None
) -> list[BaselineScore]:
    """Every model-free baseline on ``examples``; the majority baseline only with ``training``."""
    scorers: list[tuple[str, str, Scorer]] = [
        (
            "options: random",
            "a uniformly random one of the answers the question offers (expected score)",
            lambda e: _expected(options(e.question), e),
        ),
        (
            "options: first",
            "always the first answer the question offers",
            lambda e: _expected(options(e.question)[:1], e),
        ),
        (
            "options: last",
            "always the last answer the question offers",
            lambda e: _expected(options(e.question)[-1:], e),
        ),
    ]
    if training is not None:
        majority = majority_answers(training)
        scorers.append(
            (
                "majority per kind",
                f"the most frequent answer of the question's kind among {len(training)} "
                "training questions",
                lambda e: _expected([majority[kind_of(e)]] if kind_of(e) in majority else [], e),
            )
        )
    return [_score(name, text, scorer, examples) for name, text, scorer in scorers]
