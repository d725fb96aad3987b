"""Comparisons of two arms across training seeds: the seed is the random effect.

A trained arm is one draw from its training procedure; the same questions scored again under
another training seed are not new questions. So the primary test works on the per-seed mean
differences ``d_s = mean_q(b[s, q] - a[s, q])`` over the same questions, one per seed:

- a paired t-test on the ``d_s`` (``df = S - 1``) with its 95% interval: the primary result;
- the exact sign-flip permutation test over seeds (all ``2**S`` sign patterns of the ``d_s``;
  with S seeds no p below ``2 / 2**S`` is possible, 0.0625 for 5 seeds), a check that assumes no
  normality;
- a two-level bootstrap interval: resample the seeds, then the questions within each drawn seed,
  so that both sources of variance are in it.

A deterministic arm (the untrained base model, decoded greedily) is one run, not one per seed:
the caller passes its one run's scores at every seed, so its ``d_s`` differ only by the other
arm's seed, and nothing counts it twice.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import msgspec
import numpy as np

from swirl.metrics import percentile_interval
from swirl.student_t import critical_value, two_sided_p

_EXACT_SIGN_FLIP_SEEDS = 16  # 2**16 patterns; more seeds: a Monte Carlo sample of patterns
_MONTE_CARLO_FLIPS = 100_000


class SeedTest(msgspec.Struct, kw_only=True, frozen=True):
    """``b - a`` across seeds. ``per_seed`` holds the ``d_s``; ``difference`` is their mean and
    ``[low, high]`` its t interval, ``p_value`` the paired t-test's (None when undefined: one
    seed, or every ``d_s`` equal). ``questions`` counts the paired questions per seed."""

    method: str
    seeds: list[int | str]
    questions: list[int]
    per_seed: list[float]
    mean_a: float
    mean_b: float
    difference: float
    low: float | None
    high: float | None
    df: int
    p_value: float | None
    sign_flip_p: float
    sign_flip_floor: float
    bootstrap_low: float
    bootstrap_high: float
    resamples: int
    confidence: float


def _arrays(
    a: Sequence[Sequence[float]], b: Sequence[Sequence[float]], seeds: Sequence
) -> list[tuple[np.ndarray, np.ndarray]]:
    if not (len(a) == len(b) == len(seeds)) or not seeds:
        raise ValueError(
            f"seed_test: need the same seeds in both arms (a: {len(a)}, b: {len(b)}, "
            f"seeds: {len(seeds)}), at least one"
        )
    pairs = []
    for seed, first, second in zip(seeds, a, b, strict=True):
        x, y = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
        if x.shape != y.shape or x.ndim != 1 or x.size == 0:
            raise ValueError(
                f"seed_test: seed {seed}: the arms must score the same questions "
                f"(a: {x.shape}, b: {y.shape})"
            )
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise ValueError(f"seed_test: seed {seed}: scores must be finite")
        pairs.append((x, y))
    return pairs


def paired_t(
    differences: Sequence[float], confidence: float = 0.95
) -> tuple[float, float | None, float | None, float | None]:
    """(mean, low, high, p) of a one-sample t-test of ``differences`` against 0 (``df = n - 1``);
    low, high and p are None with one value or no spread (the t statistic is undefined)."""
    values = np.asarray(differences, dtype=np.float64)
    mean = float(values.mean())
    if values.size < 2 or np.ptp(values) == 0.0:
        return mean, None, None, None
    error = float(values.std(ddof=1)) / math.sqrt(values.size)
    half = critical_value(confidence, values.size - 1) * error
    return mean, mean - half, mean + half, two_sided_p(mean / error, values.size - 1)


def sign_flip_p(differences: Sequence[float], *, seed: int = 0) -> tuple[float, float]:
    """(p, floor): the two-sided sign-flip permutation p-value of ``mean(differences)`` against
    0, exact (every sign pattern) up to 16 values, else over 100,000 random patterns (+1
    corrected); ``floor`` is the smallest p the test can give (``2 / 2**n`` when exact)."""
    values = np.asarray(differences, dtype=np.float64)
    observed = abs(values.mean())
    tolerance = 1e-12 * max(1.0, float(np.abs(values).max()))
    if values.size <= _EXACT_SIGN_FLIP_SEEDS:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=values.size)))
        extreme = np.count_nonzero(np.abs(signs @ values / values.size) >= observed - tolerance)
        # the observed pattern and its negation always count: p >= 2 / 2**n
        return int(extreme) / len(signs), 2 / len(signs)
    rng = np.random.default_rng(seed)
    signs = rng.choice((1.0, -1.0), size=(_MONTE_CARLO_FLIPS, values.size))
    extreme = np.count_nonzero(np.abs(signs @ values / values.size) >= observed - tolerance)
    return (1 + int(extreme)) / (1 + _MONTE_CARLO_FLIPS), 1 / (1 + _MONTE_CARLO_FLIPS)


def two_level_bootstrap(
    differences: Sequence[np.ndarray], *, resamples: int, seed: int, confidence: float
) -> tuple[float, float]:
    """Percentile interval of the mean over seeds of the per-seed mean differences, resampling
    the seeds (with replacement), then the questions within each drawn seed."""
    rng = np.random.default_rng(seed)
    count = len(differences)
    drawn = rng.integers(0, count, size=(resamples, count))
    means = np.zeros(resamples)
    for index, values in enumerate(differences):
        slots = np.argwhere(drawn == index)  # (resample, slot) pairs that drew this seed
        block = max(1, (1 << 20) // values.size)
        for start in range(0, len(slots), block):
            rows = slots[start : start + block, 0]
            picks = rng.integers(0, values.size, size=(len(rows), values.size), dtype=np.int32)
            np.add.at(means, rows, values[picks].mean(axis=1))
    return percentile_interval(means / count, confidence)


def seed_test(
    a: Sequence[Sequence[float]],
    b: Sequence[Sequence[float]],
    seeds: Sequence[int | str],
    *,
    resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> SeedTest:
    """The across-seed comparison of the module docstring. ``a[s]`` and ``b[s]`` are the two
    arms' per-question scores at ``seeds[s]``, the same questions in the same order (shape
    ``(n_s,)``); scores are in the metric's units, and so is every difference."""
    pairs = _arrays(a, b, seeds)
    differences = [y - x for x, y in pairs]
    per_seed = [float(d.mean()) for d in differences]
    mean, low, high, p_value = paired_t(per_seed, confidence)
    flip_p, flip_floor = sign_flip_p(per_seed, seed=seed)
    boot_low, boot_high = two_level_bootstrap(
        differences, resamples=resamples, seed=seed, confidence=confidence
    )
    return SeedTest(
        method="paired t over seeds",
        seeds=list(seeds),
        questions=[d.size for d in differences],
        per_seed=per_seed,
        mean_a=float(np.mean([x.mean() for x, _ in pairs])),
        mean_b=float(np.mean([y.mean() for _, y in pairs])),
        difference=mean,
        low=low,
        high=high,
        df=len(per_seed) - 1,
        p_value=p_value,
        sign_flip_p=flip_p,
        sign_flip_floor=flip_floor,
        bootstrap_low=boot_low,
        bootstrap_high=boot_high,
        resamples=resamples,
        confidence=confidence,
    )
