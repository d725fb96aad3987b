"""Paired comparisons of two arms (trained models) scored on the same held-out questions.

Both arms answer the same questions, so their scores are compared question by question: a
paired test removes the spread between easy and hard questions, which an overlap of two separate
intervals does not. Arm ``a`` is the reference (e.g. the base model) and arm ``b`` the challenger;
every difference is ``b - a``, so a positive one means ``b`` scores higher.

- :func:`mcnemar` for 0/1 outcomes (exact match, judge accuracy): the exact McNemar test, with the
  Newcombe hybrid score interval for the difference of the two proportions.
- :func:`paired_bootstrap` for any per-question score (F1, mean process label, tool calls, or
  0/1 outcomes too): a percentile bootstrap over questions; :func:`sign_test`, the exact test
  used instead where a bootstrap over so few questions is not valid (:func:`paired_scores`).
- :func:`format_p`: a p-value as a report prints it; a bootstrap p at its resampling floor is
  printed as a bound ("≤ 0.0002"), never as if it were exact.
- :func:`holm` adjusts the p-values of a family of comparisons (several arms against base and
  against SWiRL) for multiplicity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec
import numpy as np

from swirl.metrics import bootstrap_means, percentile_interval, wilson_interval


class PairedTest(msgspec.Struct, kw_only=True, frozen=True):
    """The difference ``mean(b) - mean(a)`` over ``n`` paired questions, its interval and p-value.

    ``a_only``/``b_only`` (McNemar, sign test) count the discordant questions: those where arm
    ``a``, respectively arm ``b``, scored higher. ``resamples`` is set for the bootstrap only.
    """

    method: str  # the test, e.g. "McNemar exact"
    interval: str  # how [low, high] was made, e.g. "Newcombe hybrid score"; "" when none is
    n: int
    mean_a: float
    mean_b: float
    difference: float
    low: float | None  # None: the test gives no interval (the sign test)
    high: float | None
    confidence: float
    p_value: float  # two-sided
    a_only: int | None = None
    b_only: int | None = None
    resamples: int | None = None

    def __str__(self) -> str:
        """E.g. ``+0.060 [+0.010, +0.110], p=0.021 (McNemar exact, n=200)``."""
        interval = "" if self.low is None else f" [{self.low:+.3f}, {self.high:+.3f}]"
        return (
            f"{self.difference:+.3f}{interval}, p={format_p(self.p_value, self.resamples)} "
            f"({self.method}, n={self.n})"
        )


def resampling_floor(resamples: int) -> float:
    """The smallest two-sided p :func:`paired_bootstrap` can give: ``2 / (1 + resamples)``."""
    return 2 / (1 + resamples)


def format_p(p_value: float | None, resamples: int | None = None) -> str:
    """A p-value for a report: 3 decimals, 2 significant digits below 0.001, "n/a" for None;
    a resampling p at its floor as the bound it is, "≤ 0.0002" (``resamples`` given)."""
    if p_value is None:
        return "n/a"
    if resamples is not None and p_value <= resampling_floor(resamples) * (1 + 1e-9):
        return f"≤ {resampling_floor(resamples):.2g}"
    return f"{p_value:.3f}" if p_value >= 0.001 else f"{p_value:.2g}"


def _paired_arrays(
    test: str, a: Sequence[float], b: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Both arms as float64 arrays of shape ``(n,)``, after checking that they pair up."""
    if len(a) != len(b) or len(a) == 0:
        problem = "are empty" if len(a) == len(b) else "differ in length"
        raise ValueError(
            f"{test}: the arms must score the same questions, but they {problem} "
            f"(a: {len(a)}, b: {len(b)})"
        )
    arms = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    for name, arm in zip("ab", arms, strict=True):
        if arm.ndim != 1 or not np.isfinite(arm).all():
            raise ValueError(f"{test}: arm {name} must hold one finite score per question")
    return arms


def _exact_mcnemar_p(a_only: int, b_only: int) -> float:
    """Two-sided exact p-value: ``min(1, 2 * P[X <= min(a_only, b_only)])``, X ~ Bin(d, 1/2)
    with ``d = a_only + b_only`` discordant questions; 1 when there are none."""
    discordant = a_only + b_only
    if discordant == 0:
        return 1.0
    # Whole-number arithmetic, so the tail is exact however small; the one division rounds once.
    tail = sum(math.comb(discordant, k) for k in range(min(a_only, b_only) + 1))
    return min(1.0, tail / 2 ** (discordant - 1))


def _newcombe_interval(both: int, a_only: int, b_only: int, neither: int) -> tuple[float, float]:
    """95% interval for ``p_b - p_a`` from the paired 2x2 table (counts of questions).

    Newcombe (1998, Stat. Med. 17:2635, method 10): the Wilson score limits of the two marginal
    proportions combined by "square and add", with a term for their correlation ``psi``, the
    phi coefficient of the table continuity-corrected towards 0 (as in Newcombe's paper and
    Fagerland, Lydersen & Laake, "Statistical Analysis of Contingency Tables", ch. 8).
    """
    n = both + a_only + b_only + neither
    right_a, right_b = both + a_only, both + b_only
    wilson_a, wilson_b = wilson_interval(right_a, n), wilson_interval(right_b, n)
    p_a, p_b = right_a / n, right_b / n
    margins = right_a * (n - right_a) * right_b * (n - right_b)
    cross = both * neither - a_only * b_only
    if margins == 0 or 0 <= cross <= n / 2:
        psi = 0.0
    else:
        psi = (cross - n / 2 if cross > 0 else cross) / math.sqrt(margins)
    # Distances from each proportion to its own Wilson limits (all >= 0).
    below_a, above_a = p_a - wilson_a.low, wilson_a.high - p_a
    below_b, above_b = p_b - wilson_b.low, wilson_b.high - p_b
    difference = p_b - p_a
    low = difference - math.sqrt(below_b**2 + above_a**2 - 2 * psi * below_b * above_a)
    high = difference + math.sqrt(above_b**2 + below_a**2 - 2 * psi * above_b * below_a)
    return low, high


def mcnemar(a: Sequence[bool], b: Sequence[bool]) -> PairedTest:
    """Exact McNemar test of two arms' 0/1 outcomes on the same questions (each shape ``(n,)``).

    The p-value is the two-sided exact (conditional binomial) test on the discordant questions;
    the difference of the proportions correct ``mean(b) - mean(a)`` comes with its 95% Newcombe
    hybrid score interval (:func:`_newcombe_interval`), chosen over the Wald interval because it
    keeps near-nominal coverage with few discordant questions or proportions near 0 or 1 and
    never leaves [-1, 1] (Newcombe 1998; among the intervals Fagerland, Lydersen & Laake,
    Stat. Med. 2014, recommend).
    """
    first, second = _paired_arrays("mcnemar", a, b)
    if not (np.isin(first, (0.0, 1.0)).all() and np.isin(second, (0.0, 1.0)).all()):
        raise ValueError(
            "mcnemar: the arms must hold 0/1 outcomes (use paired_bootstrap for scores)"
        )
    right_a, right_b = first.astype(bool), second.astype(bool)
    n = right_a.size
    both = int(np.count_nonzero(right_a & right_b))
    a_only = int(np.count_nonzero(right_a & ~right_b))
    b_only = int(np.count_nonzero(~right_a & right_b))
    low, high = _newcombe_interval(both, a_only, b_only, n - both - a_only - b_only)
    return PairedTest(
        method="McNemar exact",
        interval="Newcombe hybrid score",
        n=n,
        mean_a=(both + a_only) / n,
        mean_b=(both + b_only) / n,
        difference=(b_only - a_only) / n,
        low=low,
        high=high,
        confidence=0.95,
        p_value=_exact_mcnemar_p(a_only, b_only),
        a_only=a_only,
        b_only=b_only,
    )


def paired_bootstrap(
    a: Sequence[float],
    b: Sequence[float],
    *,
    resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> PairedTest:
    """Paired percentile bootstrap of ``mean(b - a)`` over questions (each arm shape ``(n,)``).

    Every resample draws ``n`` question indices with replacement, the same ones for both arms
    (:func:`swirl.metrics.bootstrap_means` of the per-question differences); the interval is the
    percentile interval of the resampled mean differences. The two-sided p-value is
    ``min(1, 2 * (1 + k) / (1 + resamples))`` with ``k`` the number of resampled differences on
    the less populated side of 0 (ties with 0 count on both sides, which only raises p). It
    agrees with the interval: ``p < 1 - confidence`` about when 0 lies outside it. The +1 keeps
    it a valid p-value, never 0: the smallest is ``2 / (1 + resamples)``. Deterministic given
    ``seed``. Scores are in the metric's own units, and so is the difference.
    """
    first, second = _paired_arrays("paired_bootstrap", a, b)
    differences = second - first
    means = bootstrap_means(differences, resamples, seed)
    low, high = percentile_interval(means, confidence)
    other_side = min(np.count_nonzero(means <= 0.0), np.count_nonzero(means >= 0.0))
    return PairedTest(
        method="paired bootstrap",
        interval="percentile bootstrap",
        n=differences.size,
        mean_a=float(first.mean()),
        mean_b=float(second.mean()),
        difference=float(differences.mean()),
        low=low,
        high=high,
        confidence=confidence,
        p_value=min(1.0, 2 * (1 + int(other_side)) / (1 + resamples)),
        resamples=resamples,
    )


# Below this many questions a percentile bootstrap of a mean undercovers (its resamples take only
# a few distinct values); the exact sign test is used instead.
MIN_BOOTSTRAP_QUESTIONS = 20


def sign_test(a: Sequence[float], b: Sequence[float]) -> PairedTest:
    """Exact two-sided sign test of ``b - a`` per question (each arm shape ``(n,)``): among the
    questions where the arms differ, are ``b``'s wins as likely as its losses (Bin(d, 1/2))?
    Distribution-free and valid at any n; it gives no interval."""
    first, second = _paired_arrays("sign_test", a, b)
    differences = second - first
    wins, losses = int(np.count_nonzero(differences > 0)), int(np.count_nonzero(differences < 0))
    return PairedTest(
        method="sign test exact",
        interval="",
        n=differences.size,
        mean_a=float(first.mean()),
        mean_b=float(second.mean()),
        difference=float(differences.mean()),
        low=None,
        high=None,
        confidence=0.95,
        p_value=_exact_mcnemar_p(losses, wins),  # the same binomial tail as McNemar's
        a_only=losses,
        b_only=wins,
    )


def paired_scores(a: Sequence[float], b: Sequence[float], **bootstrap: int) -> PairedTest:
    """The paired test of per-question scores: :func:`paired_bootstrap`, or the exact
    :func:`sign_test` below :data:`MIN_BOOTSTRAP_QUESTIONS` questions."""
    if len(a) < MIN_BOOTSTRAP_QUESTIONS:
        return sign_test(a, b)
    return paired_bootstrap(a, b, **bootstrap)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given.

    Use it when several comparisons are read as one family, e.g. every arm against base and
    against SWiRL, and a claim such as "SWiRL beats base and SFT" rests on all of them: comparing
    the adjusted p-values with 0.05 keeps the chance of any false claim in the family at most
    0.05 (without assuming the tests independent). A single pre-registered comparison, such as
    SWiRL against base on one seed, needs no adjustment.
    """
    if any(not 0.0 <= p <= 1.0 for p in p_values):
        raise ValueError(f"holm: p-values must lie in [0, 1], got {list(p_values)}")
    count = len(p_values)
    adjusted = [0.0] * count
    running = 0.0
    # The k-th smallest p-value (k from 0) is multiplied by count - k; the running maximum keeps
    # the adjusted values in the order of the raw ones.
    for rank, index in enumerate(sorted(range(count), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (count - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted
