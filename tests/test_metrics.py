"""Answer metrics and intervals on edge cases (articles, punctuation, yes/no, Unicode, empties)."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import numpy as np
import pytest

from swirl.metrics import (
    bootstrap_interval,
    bootstrap_means,
    cover_match,
    exact_match,
    f1,
    mean_interval,
    normalize_answer,
    numeric_match,
    parse_number,
    percentile_interval,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("The Eiffel Tower", "eiffel tower"),
        ("an apple a day", "apple day"),
        ("Theatre", "theatre"),  # "the" inside a word stays
        ("A", ""),
        ("  many   spaces\tand\nlines ", "many spaces and lines"),
        ("U.S.A.", "usa"),
        ("rock 'n' roll!", "rock n roll"),
        ("“Quoted” — text…", "quoted text"),
        ("¿Qué?", "qué"),
        ("Zoë", "zoë"),
        ("ÉCOLE", "école"),
        ("$1,000", "1000"),
        ("", ""),
        ("the the", ""),
    ],
)
def test_normalize_answer(text: str, normalised: str) -> None:
    assert normalize_answer(text) == normalised


@pytest.mark.parametrize(
    ("prediction", "gold", "expected"),
    [
        ("the Beatles", "Beatles", True),
        ("Beatles.", "The Beatles", True),
        ("beatles", ["Rolling Stones", "The Beatles"], True),
        ("The Rolling Stones", "The Beatles", False),
        ("", "", True),
        ("", "Paris", False),
        ("Paris", "", False),
        ("yes", "Yes.", True),
        ("Zoe", "Zoë", False),
        ("Zoë", "ZOË", True),
    ],
)
def test_exact_match(prediction: str, gold: str | list[str], expected: bool) -> None:
    assert exact_match(prediction, gold) is expected


def test_f1_tokens_and_counts() -> None:
    # pred tokens: barack obama (2), gold: barack hussein obama (3): common 2
    score, precision, recall = f1("Barack Obama", "Barack Hussein Obama")
    assert (precision, recall) == (1.0, pytest.approx(2 / 3))
    assert score == pytest.approx(0.8)
    # repeated tokens count only as often as they occur in both
    assert f1("new new york", "new york") == pytest.approx((0.8, 2 / 3, 1.0))
    assert f1("the cat", "a dog") == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("prediction", "gold", "expected"),
    [
        ("yes", "yes", (1.0, 1.0, 1.0)),
        ("Yes.", "yes", (1.0, 1.0, 1.0)),
        ("yes it is", "yes", (0.0, 0.0, 0.0)),  # would be 0.5 F1 without the yes/no rule
        ("no", "no way", (0.0, 0.0, 0.0)),
        ("noanswer", "no answer", (0.0, 0.0, 0.0)),
        ("no", "yes", (0.0, 0.0, 0.0)),
    ],
)
def test_f1_yes_no_need_exact_match(prediction: str, gold: str, expected: tuple) -> None:
    assert f1(prediction, gold) == expected


@pytest.mark.parametrize(
    ("prediction", "gold", "exact"),
    [
        ("", "", True),
        ("a", "an", True),
        ("the", "A", True),
        ("...", "The.", True),
        ("", "Paris", False),
        ("Paris", "", False),
        ("a", "yes", False),
    ],
)
def test_empty_answers_as_the_official_hotpotqa_script(
    prediction: str, gold: str, exact: bool
) -> None:
    """hotpot_evaluate_v1.py: F1 is (0, 0, 0) when no normalised token is shared, even when both
    answers normalise to nothing; exact match compares the normalised strings, so two answers
    that normalise to nothing match."""
    assert f1(prediction, gold) == (0.0, 0.0, 0.0)
    assert exact_match(prediction, gold) is exact
    assert f1(prediction, [gold, "Paris"]) == f1(prediction, "Paris")  # an empty alias adds nothing


def test_f1_takes_the_best_alias() -> None:
    assert f1("New York City", ["NYC", "New York City", "New York"]) == (1.0, 1.0, 1.0)
    _, precision, recall = f1("New York", ["Big Apple", "New York City"])
    assert (precision, recall) == (1.0, pytest.approx(2 / 3))


def test_f1_unicode() -> None:
    assert f1("São Paulo, Brazil", "são paulo") == pytest.approx((0.8, 2 / 3, 1.0))
    assert f1("東京", "東京") == (1.0, 1.0, 1.0)


def test_empty_gold_list_is_an_error() -> None:
    with pytest.raises(ValueError, match="gold answer list is empty"):
        exact_match("x", [])


@pytest.mark.parametrize(
    ("prediction", "gold", "expected"),
    [
        ("It was the Beatles, in 1962", "The Beatles", True),
        ("Paris", "Paris, France", False),
        ("born in 1990", "1", False),  # whole tokens only
        ("in 1990", "1990", True),
        ("", "", True),
        ("something", "", False),
        ("the answer is yes", "yes", True),
        ("São Paulo", "sao paulo", False),
    ],
)
def test_cover_match(prediction: str, gold: str, expected: bool) -> None:
    assert cover_match(prediction, gold) is expected


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("72", Fraction(72)),
        ("10.00", Fraction(10)),
        ("$10", Fraction(10)),
        ("$1,234.50", Fraction(246_900, 200)),
        ("-3", Fraction(-3)),
        ("\u22127", Fraction(-7)),
        ("50%", Fraction(50)),
        ("3/4", Fraction(3, 4)),
        ("She has 72 clips.", Fraction(72)),
        ("first 12 then 18", Fraction(18)),
        ("72.0", Fraction(72)),
        (".5", Fraction(1, 2)),
        ("1/0", None),
        ("no numbers", None),
        ("", None),
    ],
)
def test_parse_number(text: str, value: Fraction | None) -> None:
    assert parse_number(text) == value


def test_parse_number_whole() -> None:
    assert parse_number(" $24.0 ", whole=True) == 24
    assert parse_number("division by zero at 3", whole=True) is None
    assert parse_number("3 + 4", whole=True) is None


@pytest.mark.parametrize(
    ("prediction", "gold", "expected"),
    [
        ("10", "10", True),
        ("10.00", "10", True),
        ("$10", "10", True),
        ("1,000", "1000", True),
        ("The total is 1,000 dollars", "1000", True),
        ("18", "1800", False),
        ("0.5", "50", False),
        ("twenty", "20", False),
        ("", "20", False),
        ("5", ["4", "5"], True),
    ],
)
def test_numeric_match(prediction: str, gold: str | list[str], expected: bool) -> None:
    assert numeric_match(prediction, gold) is expected


def test_wilson_interval_known_values() -> None:
    # Reference values for 95% Wilson intervals (z = 1.96): 5/10 -> (0.2366, 0.7634).
    estimate = wilson_interval(5, 10)
    assert (estimate.low, estimate.high) == pytest.approx((0.23659, 0.76341), abs=1e-4)
    zero = wilson_interval(0, 20)
    assert zero.mean == 0.0 and zero.low == 0.0 and 0.15 < zero.high < 0.17
    full = wilson_interval(20, 20)
    assert full.high == 1.0 and 0.83 < full.low < 0.85
    assert wilson_interval(0, 0).mean is None
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(3, 2)


def test_wilson_interval_contains_its_proportion() -> None:
    for total in range(1, 201):
        for successes in range(total + 1):
            estimate = wilson_interval(successes, total)
            assert 0.0 <= estimate.low <= estimate.mean <= estimate.high <= 1.0, (successes, total)


def test_wilson_interval_coverage() -> None:
    """About 95% of intervals from simulated samples contain the true proportion."""
    rng = random.Random(0)
    truth, trials, covered = 0.3, 2000, 0
    for _ in range(trials):
        successes = sum(rng.random() < truth for _ in range(50))
        estimate = wilson_interval(successes, 50)
        covered += estimate.low <= truth <= estimate.high
    assert 0.93 < covered / trials < 0.97


def test_mean_interval() -> None:
    values = [0.0, 0.5, 1.0, 0.5]
    estimate = mean_interval(values)
    half = 1.959963984540054 * math.sqrt((0.25 + 0 + 0.25 + 0) / 3 / 4)
    assert estimate.mean == 0.5
    assert (estimate.low, estimate.high) == pytest.approx((0.5 - half, 0.5 + half))
    clipped = mean_interval([0.0, 1.0], bounds=(0.0, 1.0))
    assert clipped.low == 0.0 and clipped.high == 1.0
    assert mean_interval([]).mean is None
    single = mean_interval([3.0])
    assert (single.low, single.mean, single.high) == (3.0, 3.0, 3.0)


def test_bootstrap_interval_is_reproducible_and_sane() -> None:
    rng = random.Random(1)
    values = [rng.gauss(2.0, 1.0) for _ in range(200)]
    first = bootstrap_interval(values, seed=7)
    assert first == bootstrap_interval(values, seed=7)
    normal = mean_interval(values)
    assert first.low < first.mean < first.high
    assert first.low == pytest.approx(normal.low, abs=0.05)
    assert first.high == pytest.approx(normal.high, abs=0.05)


def test_bootstrap_means() -> None:
    values = [1.0, 2.0, 6.0]
    means = bootstrap_means(values, resamples=500, seed=3)
    assert means.shape == (500,)
    assert np.array_equal(means, bootstrap_means(values, resamples=500, seed=3))
    # Each mean is of three draws from the values: the sums of the 10 multisets, all of them seen.
    assert set(np.round(means * 3).astype(int)) == {3, 4, 5, 6, 8, 9, 10, 13, 14, 18}
    assert means.mean() == pytest.approx(3.0, abs=0.15)
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_means([], resamples=10, seed=0)
    with pytest.raises(ValueError, match="resamples >= 1"):
        bootstrap_means(values, resamples=0, seed=0)


def test_bootstrap_means_in_blocks_match_one_draw_per_block() -> None:
    """Large inputs are resampled in blocks; every block is a full set of fresh resamples."""
    values = np.arange(2**19, dtype=np.float64)  # two resamples per block
    means = bootstrap_means(values, resamples=5, seed=0)
    assert len(set(means.tolist())) == 5
    assert means == pytest.approx(np.full(5, values.mean()), rel=0.01)


def test_percentile_interval_rounds_outwards() -> None:
    samples = np.arange(101, dtype=np.float64)  # 0, 1, ..., 100
    assert percentile_interval(samples) == (2.0, 98.0)
    assert percentile_interval(samples + 0.5, confidence=0.5) == (25.5, 75.5)
    # 0.025 * 9 = 0.225 and 0.975 * 9 = 8.775: the order statistics 0 and 9, not 1 and 8.
    assert percentile_interval(np.arange(10.0)) == (0.0, 9.0)
    with pytest.raises(ValueError, match="confidence"):
        percentile_interval(samples, confidence=1.0)
