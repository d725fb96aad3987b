"""Student's t distribution for integer degrees of freedom, without SciPy (a test-only
dependency): the two-sided tail probability in closed form and its inverse by bisection.

For ``df`` degrees of freedom and ``theta = atan(t / sqrt(df))``, ``A = P(|T| < t)`` is a finite
sum (Abramowitz & Stegun, "Handbook of Mathematical Functions", 26.7.3 and 26.7.4):

- odd ``df``: ``A = (2/pi) * (theta + sin(theta) * (cos(theta) + 2/3 cos^3(theta) + ...
  + [2*4*...*(df-3)] / [1*3*...*(df-2)] cos^(df-2)(theta)))`` (only ``theta`` for df = 1);
- even ``df``: ``A = sin(theta) * (1 + 1/2 cos^2(theta) + 1*3/(2*4) cos^4(theta) + ...
  + [1*3*...*(df-3)] / [2*4*...*(df-2)] cos^(df-2)(theta))``.
"""

from __future__ import annotations

import math


def _inside(t: float, df: int) -> float:
    """``P(|T| < |t|)`` for T ~ Student t with ``df`` degrees of freedom."""
    theta = math.atan(abs(t) / math.sqrt(df))
    sin, cos2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2:  # odd: terms cos^(2k-1), coefficient 2*4*...*(2k-2) / (1*3*...*(2k-1))
        total, term = 0.0, math.cos(theta)
        for k in range(1, (df - 1) // 2 + 1):
            total += term
            term *= cos2 * (2 * k) / (2 * k + 1)
        return (2 / math.pi) * (theta + sin * total)
    total, term = 0.0, 1.0  # even: terms cos^(2k), coefficient 1*3*...*(2k-1) / (2*4*...*2k)
    for k in range(df // 2):
        total += term
        term *= cos2 * (2 * k + 1) / (2 * k + 2)
    return sin * total


def two_sided_p(t: float, df: int) -> float:
    """``P(|T| >= |t|)``: the two-sided p-value of a t statistic with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"two_sided_p: need df >= 1, got {df}")
    if math.isinf(t):
        return 0.0
    return min(1.0, max(0.0, 1.0 - _inside(t, df)))


def critical_value(confidence: float, df: int) -> float:
    """The ``t`` with ``P(|T| < t) = confidence``, e.g. 2.776 for 95% and df = 4."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"critical_value: need 0 < confidence < 1, got {confidence}")
    low, high = 0.0, 1.0
    while _inside(high, df) < confidence:
        high *= 2
    for _ in range(200):  # bisection to float precision
        middle = (low + high) / 2
        if middle in (low, high):
            break
        low, high = (middle, high) if _inside(middle, df) < confidence else (low, middle)
    return high
