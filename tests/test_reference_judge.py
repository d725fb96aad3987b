"""The reference judge (gold annotations) on hand-built trajectories."""

from __future__ import annotations

import msgspec
import pytest
from trajectory_builders import MATH_EXAMPLE, QA_EXAMPLE, step, trajectory

from swirl.judge import ReferenceJudge, answer_is_correct

JUDGE = ReferenceJudge()


def verdicts(example, steps) -> list[bool | None]:
    labels = JUDGE.process_labels(example, trajectory(example, steps))
    assert all(label.judge == "reference" and label.explanation for label in labels)
    return [label.verdict for label in labels]


def test_search_steps_need_a_new_supporting_document() -> None:
    steps = [
        step("Find the album. <search_query>Abbey Road</search_query>", "...", ["Abbey Road"]),
        step("Again. <search_query>Abbey Road album</search_query>", "...", ["abbey  road"]),
        step("Drummer? <search_query>Beatles drummer</search_query>", "...", ["Pete Best"]),
        step("<search_query>Ringo Starr</search_query>", "...", ["Ringo Starr", "Abbey Road"]),
        step("<answer>Rory Storm and the Hurricanes</answer>"),
    ]
    assert verdicts(QA_EXAMPLE, steps) == [True, False, False, True, True]


def test_answer_and_invalid_steps() -> None:
    assert verdicts(QA_EXAMPLE, [step("<answer>The Hurricanes.</answer>")]) == [True]
    assert verdicts(QA_EXAMPLE, [step("<answer>The Beatles</answer>")]) == [False]
    assert verdicts(QA_EXAMPLE, [step("I am thinking.")]) == [False]
    assert verdicts(QA_EXAMPLE, [step("<search_query></search_query>")]) == [False]


def test_search_without_supporting_facts_uses_the_answer_in_the_result() -> None:
    example = msgspec.structs.replace(QA_EXAMPLE, supporting_facts=[])
    steps = [
        step("<search_query>Ringo</search_query>", "He joined the Hurricanes in 1959.", ["Ringo"]),
        step("<search_query>Ringo Starr</search_query>", "the Hurricanes again", ["Ringo"]),
        step("<search_query>Beatles</search_query>", "A band from Liverpool.", ["The Beatles"]),
    ]
    assert verdicts(example, steps) == [True, False, False]


def test_calculator_steps_match_annotated_results() -> None:
    steps = [
        step("Half of April. <math_exp>48/2</math_exp>", "24"),
        step("Again. <math_exp>96/4</math_exp>", "24"),
        step("Wrong. <math_exp>48*2</math_exp>", "96"),
        step("Total. <math_exp>48+24</math_exp>", "72.0000000000000"),
        step("Oops. <math_exp>48/0</math_exp>", "error: division by zero"),
        step("<answer>$72</answer>"),
    ]
    assert verdicts(MATH_EXAMPLE, steps) == [True, False, False, True, False, True]


def test_calculator_values_match_to_the_written_precision() -> None:
    example = msgspec.structs.replace(MATH_EXAMPLE, reference_steps=["10/3=3.33"], answers=["9"])
    assert verdicts(example, [step("<math_exp>10/3</math_exp>", "3.33333333333333")]) == [True]
    assert verdicts(example, [step("<math_exp>10/3</math_exp>", "10/3")]) == [True]
    assert verdicts(example, [step("<math_exp>3.4</math_exp>", "3.34")]) == [False]
    # the gold answer itself counts as an intermediate result
    assert verdicts(example, [step("<math_exp>4+5</math_exp>", "9")]) == [True]


def test_outcome_labels() -> None:
    good = trajectory(QA_EXAMPLE, [step("<answer>the hurricanes</answer>")])
    bad = trajectory(QA_EXAMPLE, [step("<answer>Wings</answer>")])
    none = trajectory(QA_EXAMPLE, [step("<search_query>x</search_query>", "", ["x"])])
    assert JUDGE.outcome_label(QA_EXAMPLE, good).verdict is True
    assert JUDGE.outcome_label(QA_EXAMPLE, bad).verdict is False
    label = JUDGE.outcome_label(QA_EXAMPLE, none)
    assert label.verdict is False and "no final answer" in label.explanation
    math = trajectory(MATH_EXAMPLE, [step("<answer>She sold 72.00 clips</answer>")])
    assert JUDGE.outcome_label(MATH_EXAMPLE, math).verdict is True


def test_answer_is_correct_falls_back_to_text_for_non_numeric_math_gold() -> None:
    example = msgspec.structs.replace(MATH_EXAMPLE, answers=["x = y"])
    assert answer_is_correct("X = Y", example)
    assert not answer_is_correct(None, example)


@pytest.mark.parametrize("mode", ["process", "outcome", "both"])
def test_judge_sets_only_the_labels_of_its_mode(mode) -> None:
    original = trajectory(QA_EXAMPLE, [step("<answer>Wings</answer>")])
    (labelled,) = JUDGE.judge([(QA_EXAMPLE, original)], mode)
    assert original.outcome is None and original.steps[0].process is None  # input untouched
    assert (labelled.steps[0].process is not None) == (mode != "outcome")
    assert (labelled.outcome is not None) == (mode != "process")


def test_mismatched_example_is_refused() -> None:
    wrong = trajectory(MATH_EXAMPLE, [step("<answer>72</answer>")])
    with pytest.raises(ValueError, match=r"math-1.*qa-1"):
        JUDGE.judge([(QA_EXAMPLE, wrong)], "both")
