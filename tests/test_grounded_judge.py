"""The grounded judge (the paper's process judge without a model) on constructed trajectories:
a correct answer is GOOD only with its evidence retrieved; searches and calculations keep the
reference judge's rules; every label names its judge and rule."""

from __future__ import annotations

import msgspec
from trajectory_builders import MATH_EXAMPLE, QA_EXAMPLE, step, trajectory

from swirl.judge import GroundedJudge, ReferenceJudge
from swirl.judge.loading import load_judge, parse_judge_spec
from swirl.settings import JudgeSettings

GROUNDED, REFERENCE = GroundedJudge(), ReferenceJudge()
ABBEY = step("<search_query>Abbey Road</search_query>", "Abbey Road: ...", ["Abbey Road"])
RINGO = step("<search_query>Ringo Starr</search_query>", "Ringo Starr: ...", ["Ringo Starr"])
OTHER = step("<search_query>Beatles</search_query>", "The Beatles: ...", ["The Beatles"])
CORRECT = step("<answer>Rory Storm and the Hurricanes</answer>")
WRONG = step("<answer>The Beatles</answer>")


def labels(judge, example, steps):
    return judge.process_labels(example, trajectory(example, steps))


def test_a_correct_answer_without_its_evidence_is_bad_and_with_it_good() -> None:
    guessed = labels(GROUNDED, QA_EXAMPLE, [CORRECT])[-1]
    assert guessed.verdict is False and guessed.rule == "answer: correct without its evidence"
    assert "Abbey Road, Ringo Starr not retrieved" in guessed.explanation
    half = labels(GROUNDED, QA_EXAMPLE, [ABBEY, OTHER, CORRECT])[-1]
    assert half.verdict is False and "Ringo Starr not retrieved" in half.explanation
    supported = labels(GROUNDED, QA_EXAMPLE, [RINGO, OTHER, ABBEY, CORRECT])[-1]
    assert supported.verdict is True and supported.rule == "answer: supported"
    # the evidence must come before the answer, and a wrong answer stays BAD with it
    assert labels(GROUNDED, QA_EXAMPLE, [WRONG, RINGO, ABBEY])[0].verdict is False
    wrong = labels(GROUNDED, QA_EXAMPLE, [ABBEY, RINGO, WRONG])[-1]
    assert wrong.verdict is False and wrong.rule == "answer: wrong"
    # the reference judge rewards the guess: that is the difference the two judges measure
    assert labels(REFERENCE, QA_EXAMPLE, [CORRECT])[-1].verdict is True


def test_searches_and_calculations_keep_the_reference_rules() -> None:
    steps = [ABBEY, ABBEY, OTHER, RINGO, CORRECT]
    grounded = labels(GROUNDED, QA_EXAMPLE, steps)
    reference = labels(REFERENCE, QA_EXAMPLE, steps)
    assert [j.verdict for j in grounded] == [True, False, False, True, True]
    assert [(j.verdict, j.rule) for j in grounded[:4]] == [
        (j.verdict, j.rule) for j in reference[:4]
    ]
    assert grounded[1].rule == "search: supporting document seen before"
    math = [
        step("<math_exp>48/2</math_exp>", "24"),
        step("<math_exp>48*2</math_exp>", "96"),
        step("<answer>72</answer>"),
    ]
    assert [(j.verdict, j.rule) for j in labels(GROUNDED, MATH_EXAMPLE, math)] == [
        (True, "math: annotated intermediate"),
        (False, "math: not annotated"),
        (True, "answer: correct"),  # a math answer keeps the reference rule
    ]


def test_without_supporting_facts_the_evidence_is_a_result_holding_the_answer() -> None:
    example = msgspec.structs.replace(QA_EXAMPLE, supporting_facts=[])
    found = step("<search_query>Ringo</search_query>", "He joined the Hurricanes.", ["Ringo"])
    assert labels(GROUNDED, example, [OTHER, CORRECT])[-1].verdict is False
    assert labels(GROUNDED, example, [found, CORRECT])[-1].verdict is True


def test_every_label_names_its_judge_and_rule() -> None:
    steps = [ABBEY, step("I think."), RINGO, CORRECT]
    (labelled,) = GROUNDED.judge([(QA_EXAMPLE, trajectory(QA_EXAMPLE, steps))], "both")
    judged = [s.process for s in labelled.steps] + [labelled.outcome]
    assert all(j.judge == "grounded" and j.rule and j.explanation for j in judged)
    assert judged[1].rule == "no valid action" and labelled.outcome.rule == "outcome: correct"


def test_the_judge_flag_builds_it() -> None:
    assert parse_judge_spec(" grounded ").name == "grounded"
    assert isinstance(load_judge(JudgeSettings(judge="grounded")), GroundedJudge)
    schema = msgspec.json.schema(JudgeSettings)
    (settings,) = schema["$defs"].values()
    assert "grounded" in settings["properties"]["judge"]["description"]
