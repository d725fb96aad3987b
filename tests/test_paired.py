"""Paired comparisons: exact McNemar with the Newcombe interval, paired bootstrap, Holm."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest

from swirl.paired import (
    MIN_BOOTSTRAP_QUESTIONS,
    PairedTest,
    format_p,
    holm,
    mcnemar,
    paired_bootstrap,
    paired_scores,
    resampling_floor,
    sign_test,
)


def _arms(both: int, a_only: int, b_only: int, neither: int) -> tuple[list[bool], list[bool]]:
    """Two arms' outcomes with the given paired 2x2 table (counts of questions)."""
    a = [True] * both + [True] * a_only + [False] * b_only + [False] * neither
    b = [True] * both + [False] * a_only + [True] * b_only + [False] * neither
    return a, b


@pytest.mark.parametrize(
    ("table", "p_value"),
    [
        ((5, 0, 6, 9), 2 * 0.5**6),  # all 6 discordant questions favour b
        ((5, 6, 0, 9), 2 * 0.5**6),
        ((3, 1, 9, 7), 2 * (1 + 10) / 2**10),  # 2 * P[Bin(10, 1/2) <= 1]
        ((4, 5, 5, 6), 1.0),  # balanced discordance
        ((4, 0, 0, 6), 1.0),  # no discordant question
        ((0, 0, 1, 0), 1.0),  # one discordant question cannot be significant
    ],
)
def test_mcnemar_exact_p_value(table: tuple[int, int, int, int], p_value: float) -> None:
    test = mcnemar(*_arms(*table))
    assert test.p_value == pytest.approx(p_value, rel=1e-12)
    assert (test.a_only, test.b_only) == table[1:3]
    assert test.difference == pytest.approx((table[2] - table[1]) / sum(table))


def test_mcnemar_textbook_examples() -> None:
    """Fagerland, Lydersen & Laake, "Statistical Analysis of Contingency Tables" (2017), ch. 8."""
    # Airway hyper-responsiveness before/after stem cell transplantation (Bentur et al. 2009):
    # exact conditional p = 0.070.
    assert mcnemar(*_arms(1, 1, 7, 12)).p_value == pytest.approx(18 / 256, rel=1e-12)
    # Complete response before/after consolidation therapy (Cavo et al. 2012): exact p = 0.052,
    # Newcombe square-and-add interval -0.0621 (-0.1186 to -0.0046) for before - after.
    cavo = mcnemar(*_arms(59, 6, 16, 80))
    assert cavo.p_value == pytest.approx(0.052479, abs=1e-6)
    assert cavo.difference == pytest.approx(0.0621, abs=5e-5)
    assert (cavo.low, cavo.high) == pytest.approx((0.0046, 0.1186), abs=5e-5)
    assert (cavo.mean_a, cavo.mean_b) == pytest.approx((65 / 161, 75 / 161))


def test_mcnemar_matches_scipy_binomtest() -> None:
    stats = pytest.importorskip("scipy.stats")
    for a_only in range(12):
        for b_only in (0, 1, 3, 7, 20, 45):
            expected = (
                stats.binomtest(a_only, a_only + b_only, 0.5).pvalue if a_only + b_only else 1
            )
            assert mcnemar(*_arms(2, a_only, b_only, 3)).p_value == pytest.approx(expected)


def test_swapping_the_arms_flips_the_difference() -> None:
    a, b = _arms(30, 4, 12, 54)
    forward, backward = mcnemar(a, b), mcnemar(b, a)
    assert backward.difference == -forward.difference
    assert (backward.low, backward.high) == pytest.approx((-forward.high, -forward.low))
    assert backward.p_value == forward.p_value
    assert (backward.a_only, backward.b_only) == (forward.b_only, forward.a_only)

    rng = np.random.default_rng(3)
    scores_a, scores_b = rng.random(150), rng.random(150) + 0.05
    forward, backward = paired_bootstrap(scores_a, scores_b), paired_bootstrap(scores_b, scores_a)
    assert backward.difference == pytest.approx(-forward.difference)
    assert (backward.low, backward.high) == pytest.approx((-forward.high, -forward.low))
    assert backward.p_value == forward.p_value


def test_newcombe_interval_holds_its_estimate_on_every_small_table() -> None:
    n = 12
    for both in range(n + 1):
        for a_only in range(n + 1 - both):
            for b_only in range(n + 1 - both - a_only):
                test = mcnemar(*_arms(both, a_only, b_only, n - both - a_only - b_only))
                table = (both, a_only, b_only)
                assert -1.0 <= test.low <= test.difference <= test.high <= 1.0, table
                assert test.low < test.high, table


@pytest.mark.parametrize(
    "cells",
    [
        (0.35, 0.05, 0.10, 0.50),  # difference 0.05, moderate accuracy
        (0.02, 0.02, 0.06, 0.90),  # difference 0.04, low accuracy (a small model's EM)
    ],
)
def test_newcombe_interval_coverage(cells: tuple[float, float, float, float]) -> None:
    """About 95% of intervals from simulated paired samples (n = 200) hold the true difference."""
    rng = np.random.default_rng(0)
    truth, trials = cells[2] - cells[1], 2000
    tables = rng.multinomial(200, cells, size=trials)
    covered = 0
    for table in tables:
        test = mcnemar(*_arms(*(int(count) for count in table)))
        covered += test.low <= truth <= test.high
    assert 0.93 < covered / trials < 0.975


@pytest.mark.parametrize("test", [mcnemar, paired_bootstrap])
def test_arms_must_pair_up(test) -> None:
    with pytest.raises(ValueError, match=r"differ in length \(a: 3, b: 2\)"):
        test([True, False, True], [True, False])
    with pytest.raises(ValueError, match=r"are empty \(a: 0, b: 0\)"):
        test([], [])


def test_mcnemar_needs_zero_one_outcomes() -> None:
    with pytest.raises(ValueError, match="0/1 outcomes"):
        mcnemar([0.5, 1.0], [1.0, 0.0])
    assert mcnemar([1, 0, 1], [1.0, 1.0, 0.0]) == mcnemar([True, False, True], [True, True, False])


def test_paired_bootstrap_rejects_non_finite_scores() -> None:
    with pytest.raises(ValueError, match="arm b must hold one finite score"):
        paired_bootstrap([0.1, 0.2], [0.3, math.nan])


def test_paired_bootstrap_constant_shift() -> None:
    """Every question gains 0.1: the interval collapses onto 0.1 and no resample reaches 0."""
    a = np.random.default_rng(1).random(200)
    test = paired_bootstrap(a, a + 0.1, resamples=2000)
    assert test.difference == pytest.approx(0.1)
    # (a + 0.1) - a is 0.1 only up to rounding, so the ends differ by a few ulps at most.
    assert (test.low, test.high) == pytest.approx((0.1, 0.1), abs=1e-15)
    assert test.p_value == pytest.approx(2 / 2001)
    assert (test.n, test.resamples) == (200, 2000)


def test_paired_bootstrap_identical_arms() -> None:
    a = np.random.default_rng(2).random(200)
    test = paired_bootstrap(a, a.copy())
    assert (test.difference, test.low, test.high, test.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_paired_bootstrap_is_seeded() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.random(300), rng.random(300)
    first = paired_bootstrap(a, b, seed=7)
    assert paired_bootstrap(a, b, seed=7) == first
    other = paired_bootstrap(a, b, seed=8)
    assert (other.low, other.high) != (first.low, first.high)
    assert other.difference == first.difference


def test_paired_bootstrap_agrees_with_the_normal_interval() -> None:
    """For a mean of 400 differences the bootstrap and normal intervals nearly coincide."""
    rng = np.random.default_rng(5)
    a = rng.normal(0.5, 0.2, 400)
    b = a + rng.normal(0.03, 0.1, 400)
    test = paired_bootstrap(a, b)
    differences = b - a
    half = 1.959963984540054 * differences.std(ddof=1) / math.sqrt(400)
    assert (test.low, test.high) == pytest.approx(
        (differences.mean() - half, differences.mean() + half), abs=0.002
    )
    assert test.p_value < 0.001  # the shift is 6 standard errors
    narrow = paired_bootstrap(a, b, confidence=0.5)
    assert test.low < narrow.low < narrow.high < test.high


def test_paired_bootstrap_agrees_with_mcnemar_on_outcomes() -> None:
    a, b = _arms(60, 10, 22, 108)
    exact, bootstrap = mcnemar(a, b), paired_bootstrap(a, b)
    assert bootstrap.difference == exact.difference
    assert (bootstrap.low, bootstrap.high) == pytest.approx((exact.low, exact.high), abs=0.01)
    assert bootstrap.p_value == pytest.approx(exact.p_value, abs=0.02)


def test_paired_test_text_and_serialisation() -> None:
    test = PairedTest(
        method="McNemar exact",
        interval="Newcombe hybrid score",
        n=200,
        mean_a=0.1,
        mean_b=0.16,
        difference=0.06,
        low=0.01,
        high=0.11,
        confidence=0.95,
        p_value=0.0213,
        a_only=4,
        b_only=16,
    )
    assert str(test) == "+0.060 [+0.010, +0.110], p=0.021 (McNemar exact, n=200)"
    assert msgspec.json.decode(msgspec.json.encode(test), type=PairedTest) == test
    small = msgspec.structs.replace(test, difference=-0.06, low=-0.11, high=-0.01, p_value=2e-4)
    assert str(small) == "-0.060 [-0.110, -0.010], p=0.0002 (McNemar exact, n=200)"


def test_holm_adjustment() -> None:
    # Sorted: 0.005 * 4 = 0.02, 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, 0.04 * 1 -> raised to 0.06.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == [1.0, 1.0]
    assert holm([0.02]) == [0.02]
    assert holm([]) == []
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.2, 1.5])


def test_sign_test_is_exact_and_replaces_the_bootstrap_at_small_n() -> None:
    stats = pytest.importorskip("scipy.stats")
    a = [0.2, 0.5, 0.1, 0.9, 0.4, 0.4, 0.3]
    b = [0.6, 0.7, 0.1, 0.95, 0.2, 0.8, 0.9]  # 5 wins, 1 loss, 1 tie
    test = sign_test(a, b)
    assert test.p_value == pytest.approx(stats.binomtest(5, 6, 0.5).pvalue)
    assert (test.b_only, test.a_only) == (5, 1) and test.low is None
    assert "p=0.219 (sign test exact, n=7)" in str(test)
    assert paired_scores(a, b).method == "sign test exact"
    many = np.random.default_rng(0).random(MIN_BOOTSTRAP_QUESTIONS)
    assert paired_scores(many, many + 0.1, resamples=500).method == "paired bootstrap"


def test_a_bootstrap_p_at_its_floor_prints_as_a_bound() -> None:
    test = paired_bootstrap([0.0] * 30, [1.0] * 30, resamples=10_000)
    assert test.p_value == resampling_floor(10_000)
    assert format_p(test.p_value, 10_000) == "≤ 0.0002"
    assert "p=≤ 0.0002" in str(test)
    assert format_p(0.0004, 10_000) == "0.0004" and format_p(0.0212) == "0.021"
    assert format_p(None) == "n/a"
