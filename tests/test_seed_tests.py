"""Comparisons across training seeds (the seed as the random effect) and the Student t
distribution they use, against SciPy on random and edge inputs."""

from __future__ import annotations

import numpy as np
import pytest

from swirl.seed_tests import paired_t, seed_test, sign_flip_p, two_level_bootstrap
from swirl.student_t import critical_value, two_sided_p


def test_student_t_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for df in [*range(1, 31), 57, 200, 1001]:
        for t in [*rng.normal(0, 3, 12), 0.0, 1e-9, -0.4, 40.0, -1e4]:
            assert two_sided_p(t, df) == pytest.approx(2 * stats.t.sf(abs(t), df), abs=1e-9)
        for confidence in (0.5, 0.9, 0.95, 0.99, 0.999):
            expected = stats.t.ppf((1 + confidence) / 2, df)
            assert critical_value(confidence, df) == pytest.approx(expected, rel=1e-9)
    assert two_sided_p(float("inf"), 3) == 0.0
    with pytest.raises(ValueError, match="df >= 1"):
        two_sided_p(1.0, 0)


def test_paired_t_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    for size in (2, 3, 5, 8):
        values = rng.normal(0.02, 0.05, size)
        mean, low, high, p = paired_t(values)
        result = stats.ttest_1samp(values, 0.0)
        interval = result.confidence_interval(0.95)
        assert p == pytest.approx(result.pvalue, rel=1e-9)
        assert (low, high) == pytest.approx((interval.low, interval.high), rel=1e-9)
        assert mean == pytest.approx(values.mean())
    # undefined with one seed, or with no spread across seeds: no p, no interval
    assert paired_t([0.1]) == (0.1, None, None, None)
    assert paired_t([0.1, 0.1, 0.1])[1:] == (None, None, None)


def test_sign_flip_is_exact_over_all_patterns() -> None:
    # 5 seeds all favouring b: only the observed pattern and its negation are as extreme
    assert sign_flip_p([0.1, 0.2, 0.05, 0.3, 0.1]) == (2 / 32, 2 / 32)
    # one small loss among 4: patterns with |mean| >= observed, counted by hand: 4 of 16
    # (+ + + -) (- - - +) (+ + + +) (- - - -)
    assert sign_flip_p([0.3, 0.3, 0.3, -0.1])[0] == pytest.approx(4 / 16)
    assert sign_flip_p([0.0, 0.0])[0] == 1.0
    many, floor = sign_flip_p(np.full(20, 0.1))
    assert floor == pytest.approx(1 / 100_001) and many == pytest.approx(floor, rel=0.5)


def test_seed_test_on_a_constructed_case() -> None:
    """b = a + delta_s on every question of seed s: d_s = delta_s exactly, so the t-test is
    scipy's on the deltas; the inner (question) resampling cannot move a constant difference, so
    the two-level interval lies within the deltas' range."""
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(2)
    deltas = [0.10, 0.05, 0.20, 0.00, 0.15]
    a = [rng.random(30) for _ in deltas]
    b = [x + d for x, d in zip(a, deltas, strict=True)]
    test = seed_test(a, b, [0, 1, 2, 3, 4], resamples=4000)
    assert test.per_seed == pytest.approx(deltas)
    assert test.difference == pytest.approx(0.10) and test.df == 4
    assert test.p_value == pytest.approx(stats.ttest_1samp(deltas, 0.0).pvalue, rel=1e-9)
    assert test.low < 0.10 < test.high
    # the tie at seed 3 flips to itself: 4 of 32 patterns are as extreme as the observed one
    assert test.sign_flip_p == pytest.approx(4 / 32) and test.sign_flip_floor == 2 / 32
    assert 0.0 <= test.bootstrap_low < 0.10 < test.bootstrap_high <= 0.20
    assert test.questions == [30] * 5
    assert test.mean_b - test.mean_a == pytest.approx(0.10)


def test_two_level_bootstrap_sees_question_variance() -> None:
    """One seed (no seed variance): the interval is the per-question bootstrap's; with equal
    seeds it narrows as seeds are added (more questions in all)."""
    rng = np.random.default_rng(3)
    noisy = rng.choice([-1.0, 0.0, 1.0], size=200)
    one = two_level_bootstrap([noisy], resamples=4000, seed=0, confidence=0.95)
    four = two_level_bootstrap([noisy] * 4, resamples=4000, seed=0, confidence=0.95)
    assert one[0] < noisy.mean() < one[1]
    assert (four[1] - four[0]) < 0.7 * (one[1] - one[0])


def test_seed_test_refuses_unpaired_input() -> None:
    with pytest.raises(ValueError, match="same seeds"):
        seed_test([[1.0]], [[1.0], [0.0]], [0])
    with pytest.raises(ValueError, match="seed 7: the arms must score the same questions"):
        seed_test([[1.0, 0.0]], [[1.0]], [7])
    with pytest.raises(ValueError, match="finite"):
        seed_test([[float("nan")]], [[1.0]], [0])
