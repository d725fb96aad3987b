"""The reference judge: labels from the gold annotations, for offline runs and tests.

This is not the paper's judge (a prompted LLM); it is a deterministic stand-in that needs no model,
used where no LLM judge is configured. Its labels say ``judge="reference"`` and name the rule
that decided them (``Judgment.rule``, e.g. ``"search: new supporting document"``). Rules:

- search step: GOOD if it retrieved a supporting document (``Step.retrieved`` titles vs
  ``Example.supporting_facts``) that no earlier step retrieved. An example without supporting
  facts falls back to: GOOD if the result contains a gold answer and its documents are new.
- calculator step: GOOD if its value is one of the annotated intermediate results
  (``Example.reference_steps``, e.g. "48/2=24" gives 24) or the gold answer, and no earlier step
  produced that value. A value is compared to the precision the annotation is written in, so
  3.3333333 matches "10/3=3.33".
- answer step: GOOD if the answer is correct (below). A turn without a valid action is BAD.
- outcome: the answer is correct: normalised exact match over the gold aliases for QA, numeric
  match for math (falling back to exact match when the gold answer is not a number).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from swirl.judge.base import Mode, check_pair, wants_outcome, wants_process, with_labels
from swirl.metrics import cover_match, exact_match, numeric_match, parse_number
from swirl.schema import Example, Judgment, Step, Trajectory

REFERENCE_JUDGE = "reference"


def title_key(title: str) -> str:
    return " ".join(title.casefold().split())


def answer_is_correct(prediction: str | None, example: Example) -> bool:
    """Whether ``prediction`` matches the gold answer of ``example`` (see module docstring)."""
    if prediction is None:
        return False
    if example.task == "math" and any(parse_number(a) is not None for a in example.answers):
        return numeric_match(prediction, example.answers)
    return exact_match(prediction, example.answers)


def _annotated_value(text: str) -> tuple[Fraction, int] | None:
    """Value of "expr=value" (or a bare number) and its number of written decimals."""
    value_text = text.rsplit("=", 1)[-1].strip()
    value = parse_number(value_text, whole=True)
    if value is None:
        return None
    fraction_digits = re.search(r"\.(\d+)", value_text)
    return value, len(fraction_digits.group(1)) if fraction_digits else 0


def _matches(value: Fraction, reference: tuple[Fraction, int]) -> bool:
    target, decimals = reference
    if value == target:
        return True
    # Agree to the precision the annotation was written in (rounding half away from zero).
    scale = Fraction(10) ** decimals
    return abs(value - target) <= Fraction(1, 2) / scale


@dataclass
class Seen:
    """What the steps before the one being judged did: the documents their searches retrieved
    (title keys), the values their calculations gave, and their tool results."""

    titles: set[str] = field(default_factory=set)
    values: list[Fraction] = field(default_factory=list)
    results: list[str] = field(default_factory=list)


Label = tuple[bool, str, str]  # (verdict, rule, explanation)


class ReferenceJudge:
    """Judges trajectories from gold annotations; see the module docstring for the rules."""

    name = REFERENCE_JUDGE

    def process_labels(self, example: Example, trajectory: Trajectory) -> list[Judgment]:
        """One label per step of ``trajectory``."""
        check_pair(example, trajectory)
        supporting = {title_key(fact.title) for fact in example.supporting_facts}
        references = [
            value
            for value in map(_annotated_value, [*example.reference_steps, *example.answers])
            if value is not None
        ]
        seen = Seen()
        labels = []
        for step in trajectory.steps:
            kind = step.action.kind
            if kind == "search":
                verdict, rule, why = self._search(step, example, supporting, seen.titles)
                seen.titles.update(map(title_key, step.retrieved))
            elif kind == "math":
                verdict, rule, why = self._math(step, references, seen.values)
            elif kind == "answer":
                verdict, rule, why = self.answer_label(step, example, supporting, seen)
            else:
                verdict, rule, why = False, "no valid action", f"no valid action ({kind})"
            if kind in ("search", "math"):
                seen.results.append(step.result)
            labels.append(Judgment(judge=self.name, verdict=verdict, explanation=why, rule=rule))
        return labels

    def answer_label(self, step: Step, example: Example, supporting: set[str], seen: Seen) -> Label:
        """An answer step is GOOD when the answer is correct (``seen``: the steps before it)."""
        if answer_is_correct(step.action.payload, example):
            return True, "answer: correct", "the answer matches the gold answer"
        return False, "answer: wrong", "the answer is wrong"

    @staticmethod
    def _search(step: Step, example: Example, supporting: set[str], seen: set[str]) -> Label:
        titles = [title_key(title) for title in step.retrieved]
        new = [title for title in titles if title not in seen]
        if supporting:
            useful = [title for title in new if title in supporting]
            if useful:
                return (
                    True,
                    "search: new supporting document",
                    f"retrieved new supporting document(s): {', '.join(useful)}",
                )
            if any(title in supporting for title in titles):
                return (
                    False,
                    "search: supporting document seen before",
                    "retrieved only supporting documents found before",
                )
            return False, "search: no supporting document", "retrieved no supporting document"
        # No supporting facts annotated: judge by the gold answer appearing in a new result.
        if titles and not new:
            return (
                False,
                "search: only documents seen before",
                "retrieved only documents found before",
            )
        if cover_match(step.result, example.answers):
            return (
                True,
                "search: gold answer in a new result",
                "the (new) result contains the gold answer",
            )
        return (
            False,
            "search: gold answer not in the result",
            "the result does not contain the gold answer",
        )

    @staticmethod
    def _math(
        step: Step, references: Sequence[tuple[Fraction, int]], seen: list[Fraction]
    ) -> Label:
        value = parse_number(step.result, whole=True)
        shown = step.result.strip()
        if value is None:
            return False, "math: no number", f"the calculator gave no number ({shown[:80]!r})"
        if any(value == earlier for earlier in seen):
            return False, "math: value computed before", f"{shown} was computed before"
        seen.append(value)
        if any(_matches(value, reference) for reference in references):
            return (
                True,
                "math: annotated intermediate",
                f"{shown} is an annotated intermediate result",
            )
        return False, "math: not annotated", f"{shown} is not an annotated intermediate result"

    def outcome_label(self, example: Example, trajectory: Trajectory) -> Judgment:
        check_pair(example, trajectory)
        correct = answer_is_correct(trajectory.final_answer, example)
        if trajectory.final_answer is None:
            rule, why = "outcome: no answer", f"no final answer ({trajectory.termination})"
        elif correct:
            rule, why = "outcome: correct", "matches the gold answer"
        else:
            rule, why = "outcome: wrong", "does not match the gold answer"
        return Judgment(judge=self.name, verdict=correct, explanation=why, rule=rule)

    def judge(self, batch: Sequence[tuple[Example, Trajectory]], mode: Mode) -> list[Trajectory]:
        return [
            with_labels(
                trajectory,
                process=self.process_labels(example, trajectory) if wants_process(mode) else None,
                outcome=self.outcome_label(example, trajectory) if wants_outcome(mode) else None,
            )
            for example, trajectory in batch
        ]
