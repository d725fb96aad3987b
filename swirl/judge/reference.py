"""The reference judge: labels from the gold annotations, for offline runs and tests.

This is not the paper's judge (a prompted LLM); it is a deterministic stand-in that needs no model,
used where no LLM judge is configured. Its labels say ``judge="reference"``. Rules:

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
from fractions import Fraction

from swirl.judge.base import Mode, check_pair, wants_outcome, wants_process, with_labels
from swirl.metrics import cover_match, exact_match, numeric_match, parse_number
from swirl.schema import Example, Judgment, Step, Trajectory

REFERENCE_JUDGE = "reference"


def _title_key(title: str) -> str:
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


class ReferenceJudge:
    """Judges trajectories from gold annotations; see the module docstring for the rules."""

    name = REFERENCE_JUDGE

    def process_labels(self, example: Example, trajectory: Trajectory) -> list[Judgment]:
        """One label per step of ``trajectory``."""
        check_pair(example, trajectory)
        supporting = {_title_key(fact.title) for fact in example.supporting_facts}
        references = [
            value
            for value in map(_annotated_value, [*example.reference_steps, *example.answers])
            if value is not None
        ]
        seen_titles: set[str] = set()
        seen_values: list[Fraction] = []
        labels = []
        for step in trajectory.steps:
            kind = step.action.kind
            if kind == "search":
                verdict, why = self._search(step, example, supporting, seen_titles)
                seen_titles.update(map(_title_key, step.retrieved))
            elif kind == "math":
                verdict, why = self._math(step, references, seen_values)
            elif kind == "answer":
                verdict = answer_is_correct(step.action.payload, example)
                why = "the answer matches the gold answer" if verdict else "the answer is wrong"
            else:
                verdict, why = False, f"no valid action ({kind})"
            labels.append(Judgment(judge=self.name, verdict=verdict, explanation=why))
        return labels

    @staticmethod
    def _search(
        step: Step, example: Example, supporting: set[str], seen: set[str]
    ) -> tuple[bool, str]:
        titles = [_title_key(title) for title in step.retrieved]
        new = [title for title in titles if title not in seen]
        if supporting:
            useful = [title for title in new if title in supporting]
            if useful:
                return True, f"retrieved new supporting document(s): {', '.join(useful)}"
            if any(title in supporting for title in titles):
                return False, "retrieved only supporting documents found before"
            return False, "retrieved no supporting document"
        # No supporting facts annotated: judge by the gold answer appearing in a new result.
        if titles and not new:
            return False, "retrieved only documents found before"
        if cover_match(step.result, example.answers):
            return True, "the (new) result contains the gold answer"
        return False, "the result does not contain the gold answer"

    @staticmethod
    def _math(
        step: Step, references: Sequence[tuple[Fraction, int]], seen: list[Fraction]
    ) -> tuple[bool, str]:
        value = parse_number(step.result, whole=True)
        if value is None:
            return False, f"the calculator gave no number ({step.result.strip()[:80]!r})"
        if any(value == earlier for earlier in seen):
            return False, f"{step.result.strip()} was computed before"
        seen.append(value)
        if any(_matches(value, reference) for reference in references):
            return True, f"{step.result.strip()} is an annotated intermediate result"
        return False, f"{step.result.strip()} is not an annotated intermediate result"

    def outcome_label(self, example: Example, trajectory: Trajectory) -> Judgment:
        check_pair(example, trajectory)
        correct = answer_is_correct(trajectory.final_answer, example)
        if trajectory.final_answer is None:
            why = f"no final answer ({trajectory.termination})"
        else:
            why = "matches the gold answer" if correct else "does not match the gold answer"
        return Judgment(judge=self.name, verdict=correct, explanation=why)

    def judge(self, batch: Sequence[tuple[Example, Trajectory]], mode: Mode) -> list[Trajectory]:
        return [
            with_labels(
                trajectory,
                process=self.process_labels(example, trajectory) if wants_process(mode) else None,
                outcome=self.outcome_label(example, trajectory) if wants_outcome(mode) else None,
            )
            for example, trajectory in batch
        ]
