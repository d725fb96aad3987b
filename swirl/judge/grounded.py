"""The grounded judge: the paper's process judge, without a model.

The paper's judge labels each step by what a careful reader of the context so far would say,
without the gold answer deciding the answer step: an answer is GOOD only when the search results
seen so far support it. This judge applies that rule with the gold annotations standing in for
the careful reader. Its labels say ``judge="grounded"`` and name their rule:

- answer step (QA): GOOD only when every supporting document of the question
  (``Example.supporting_facts``) was retrieved by an earlier step of the trajectory AND the answer
  is correct; a correct answer without its evidence (a guess, or a fact the model knew) is BAD
  (``"answer: correct without its evidence"``). For a question without supporting facts the
  evidence is a tool result that contains the gold answer;
- search step: GOOD when it retrieves a supporting document no earlier step retrieved (the
  reference judge's rule);
- calculator step, and a math problem's answer: the reference judge's rules (an annotated
  intermediate result; a correct answer);
- outcome: the answer is correct (the reference judge's rule).

Everything but the QA answer rule is :class:`~swirl.judge.reference.ReferenceJudge`'s own code,
so the two judges differ exactly where the paper's judge and an outcome check do.
"""

from __future__ import annotations

from swirl.judge.reference import Label, ReferenceJudge, Seen, answer_is_correct, title_key
from swirl.metrics import cover_match
from swirl.schema import Example, Step

GROUNDED_JUDGE = "grounded"


class GroundedJudge(ReferenceJudge):
    """Judges trajectories from gold annotations, answers by their evidence (module docstring)."""

    name = GROUNDED_JUDGE

    def answer_label(self, step: Step, example: Example, supporting: set[str], seen: Seen) -> Label:
        if example.task == "math":
            return super().answer_label(step, example, supporting, seen)
        if not answer_is_correct(step.action.payload, example):
            return False, "answer: wrong", "the answer is wrong"
        if supporting:
            missing = sorted(
                fact.title
                for fact in example.supporting_facts
                if title_key(fact.title) not in seen.titles
            )
            if missing:
                return (
                    False,
                    "answer: correct without its evidence",
                    f"correct, but not supported yet: {', '.join(dict.fromkeys(missing))} "
                    "not retrieved",
                )
            return True, "answer: supported", "correct, and every supporting document was retrieved"
        if any(cover_match(result, example.answers) for result in seen.results):
            return True, "answer: supported", "correct, and an earlier result contains it"
        return (
            False,
            "answer: correct without its evidence",
            "correct, but no earlier result contains it",
        )
