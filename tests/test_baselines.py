"""Model-free baselines: the options a question offers, the per-kind majority answer, and the
issue's measurement on demo-qa's test split (which they reproduce)."""

from __future__ import annotations

import pytest

from swirl.baselines import baselines, majority_answers, options
from swirl.data import load_examples
from swirl.schema import Example


def test_options_a_question_offers() -> None:
    assert options("Who is older, Vesna Kortel or Ilan Sorvek?") == ["Vesna Kortel", "Ilan Sorvek"]
    assert options("Which magazine was started first, Arthur's Magazine or First for Women?") == [
        "Arthur's Magazine",
        "First for Women",
    ]
    assert options("Were Alina Kor and Bruno Tel born in the same city?") == ["yes", "no"]
    assert options("In which city was the older of Alina Kor and Bruno Tel born?") == []
    assert options("Who founded Belmar Optics?") == []


def test_demo_qa_test_split_reproduces_the_issue() -> None:
    """Issue 18 measured on demo-qa's test split (200 questions, data_seed 0): always the second
    name scores 0.320; a random name 0.297 in its draw, whose expectation is 59 / 200 = 0.295
    (118 comparison questions, each right with probability 1/2)."""
    test = load_examples("demo-qa", split="test", limit=200, seed=0)
    train = load_examples("demo-qa", split="train", limit=200, seed=0)
    found = {b.name: b for b in baselines(test, train)}
    assert found["options: random"].exact_match == pytest.approx(0.295)
    assert found["options: last"].exact_match == pytest.approx(0.320)
    assert found["options: first"].exact_match == pytest.approx(0.270)
    assert found["options: random"].answered == 118
    assert found["options: random"].by_stratum == {"bridge": 0.0, "comparison": 0.5}
    assert found["majority per kind"].answered == 200


def test_majority_per_kind() -> None:
    def example(kind: str | None, answer: str) -> Example:
        metadata = {"type": kind} if kind else {}
        return Example(id=answer, question="?", answers=[answer], dataset="t", metadata=metadata)

    training = [example("a", "Paris"), example("a", "the paris"), example("a", "Rome")]
    training += [example("b", "1990"), example("b", "1991"), example(None, "x")]
    # normalised answers are counted together; a tie goes to the first seen; no kind is "all"
    assert majority_answers(training) == {"a": "Paris", "b": "1990", "all": "x"}
    questions = [example("a", "Paris"), example("b", "1991"), example("c", "Rome")]
    (*_, majority) = baselines(questions, training)
    assert majority.exact_match == pytest.approx(1 / 3)
    assert majority.answered == 2  # kind c never occurs in training: no answer
    assert [b.name for b in baselines(questions)] == [
        "options: random",
        "options: first",
        "options: last",
    ]


def test_demo_hops_offers_nothing_to_guess() -> None:
    test = load_examples("demo-hops", split="test")
    found = {b.name: b for b in baselines(test, load_examples("demo-hops", split="train"))}
    assert found["options: random"].answered == 0
    assert found["majority per kind"].exact_match < 0.06
    assert set(found["majority per kind"].by_stratum) == {
        "attribute 1-hop",
        "bridge 2-hop",
        "bridge 3-hop",
        "comparison 2-hop",
        "comparison 3-hop",
    }
