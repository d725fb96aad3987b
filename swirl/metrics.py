"""Answer metrics of the paper's evaluation, and 95% intervals for their averages.

Text answers use the HotPotQA/SQuAD normalisation: lowercase, drop punctuation, drop the articles
a/an/the, squeeze whitespace. Exact match and F1 follow the official HotPotQA evaluation script
(``hotpot_evaluate_v1.py``) exactly on ASCII text, including its edge cases: answers that
normalise to nothing ("", "a", "the") are an exact match of each other but have F1 0, since F1 is
0 whenever no token is shared (SQuAD 2.0 would give 1 there). One deliberate extension: every
Unicode punctuation character (category P*, e.g. curly quotes and the en dash) is dropped, not
only ``string.punctuation``, so ``"“Paris”"`` matches ``"Paris"`` where the official script
keeps the quotes. Accents are kept ("Zoë" != "Zoe").

Every metric takes one prediction and either one gold string or a list of aliases; with aliases it
is the maximum over them. GSM8K numeric match compares numbers, not strings ("$1,000.00" == "1000").

Intervals (all 95%): proportions (0/1 metrics) use the Wilson score interval, which stays inside
[0, 1] and behaves at 0% and 100%; means (F1, process label, tool calls) use the normal
approximation mean +- 1.96 * s / sqrt(n) with the sample standard deviation, clipped to the
metric's range when it has one. :func:`bootstrap_interval` gives a percentile bootstrap instead;
its parts (:func:`bootstrap_means`, :func:`percentile_interval`) also serve the paired comparisons
of :mod:`swirl.paired`.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from fractions import Fraction

import msgspec
import numpy as np

Z_95 = 1.959963984540054  # two-sided 95% quantile of the standard normal

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
# Answers that must match exactly for F1 to give credit (HotPotQA's rule for yes/no questions).
_CLOSED_ANSWERS = frozenset({"yes", "no", "noanswer"})
_ASCII_PUNCTUATION = frozenset(string.punctuation)


def _is_punctuation(char: str) -> bool:
    # string.punctuation also holds ASCII symbols ($, +, <, ...), which SQuAD drops as well.
    return char in _ASCII_PUNCTUATION or unicodedata.category(char).startswith("P")


def normalize_answer(text: str) -> str:
    """HotPotQA/SQuAD answer normalisation (with Unicode punctuation dropped too)."""
    text = "".join(char for char in text.lower() if not _is_punctuation(char))
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _aliases(gold: str | Sequence[str]) -> list[str]:
    if isinstance(gold, str):
        return [gold]
    aliases = list(gold)
    if not aliases:
        raise ValueError("metrics: the gold answer list is empty")
    return aliases


def exact_match(prediction: str, gold: str | Sequence[str]) -> bool:
    """True when the normalised prediction equals a normalised gold alias."""
    normalised = normalize_answer(prediction)
    return any(normalised == normalize_answer(alias) for alias in _aliases(gold))


def _f1_one(prediction: str, gold: str) -> tuple[float, float, float]:
    normalised_prediction, normalised_gold = normalize_answer(prediction), normalize_answer(gold)
    if (
        normalised_prediction in _CLOSED_ANSWERS or normalised_gold in _CLOSED_ANSWERS
    ) and normalised_prediction != normalised_gold:
        return 0.0, 0.0, 0.0
    prediction_tokens, gold_tokens = normalised_prediction.split(), normalised_gold.split()
    common = sum((Counter(prediction_tokens) & Counter(gold_tokens)).values())
    if common == 0:  # also when a side normalises to nothing: 0 even for two empty answers
        return 0.0, 0.0, 0.0
    precision = common / len(prediction_tokens)
    recall = common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall), precision, recall


def f1(prediction: str, gold: str | Sequence[str]) -> tuple[float, float, float]:
    """Token-level ``(f1, precision, recall)`` against the gold alias with the best F1.

    As in the official HotPotQA script: yes/no/noanswer (after normalisation) score only on an
    exact match, and no shared token (an empty normalised answer included) scores 0.
    """
    return max((_f1_one(prediction, alias) for alias in _aliases(gold)), key=lambda s: s[0])


def cover_match(prediction: str, gold: str | Sequence[str]) -> bool:
    """True when a normalised gold alias appears in the normalised prediction as a run of whole
    tokens ("paris" covers "it is paris", but "1" does not cover "1990"). An empty gold covers
    only an empty prediction."""
    prediction_tokens = normalize_answer(prediction).split()
    for alias in _aliases(gold):
        gold_tokens = normalize_answer(alias).split()
        if not gold_tokens:
            if not prediction_tokens:
                return True
            continue
        width = len(gold_tokens)
        if any(
            prediction_tokens[start : start + width] == gold_tokens
            for start in range(len(prediction_tokens) - width + 1)
        ):
            return True
    return False


# A number as people write answers: optional sign and currency, thousands commas, decimals,
# or a simple fraction; a trailing % is allowed and ignored (GSM8K answers are bare numbers).
_NUMBER = re.compile(
    r"(?<![\w.])(-|\u2212)?\s*[$€£]?\s*"
    r"(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?:\s*/\s*(\d+)(?![\d.]))?"
)


_SURROUNDING = " \t\n%.$€£"


def parse_number(text: str, *, whole: bool = False) -> Fraction | None:
    """The last number written in ``text`` as an exact fraction, or None when there is none.

    Accepts "1,234.50", "$10", "-3", "50%", "10.00", "3/4"; the last number wins, so
    "so she has 72 clips" gives 72. With ``whole=True`` the text must be that one number (with
    only spaces, a currency sign, % or a final full stop around it), so "error at 3" gives None.
    """
    matches = list(_NUMBER.finditer(text))
    if not matches:
        return None
    last = matches[-1]
    if whole and (
        text[: last.start()].strip(_SURROUNDING) or text[last.end() :].strip(_SURROUNDING)
    ):
        return None
    sign, digits, denominator = last.groups()
    try:
        value = Fraction(Decimal(digits.replace(",", "")))
    except (InvalidOperation, ValueError):
        return None
    if denominator is not None:
        if int(denominator) == 0:
            return None
        value /= int(denominator)
    return -value if sign else value


def numeric_match(prediction: str, gold: str | Sequence[str]) -> bool:
    """GSM8K match: the last number of the prediction equals the number of a gold alias."""
    predicted = parse_number(prediction)
    if predicted is None:
        return False
    return any(parse_number(alias) == predicted for alias in _aliases(gold))


class Estimate(msgspec.Struct, kw_only=True):
    """An average with its 95% interval; all None when there were no values."""

    mean: float | None
    low: float | None
    high: float | None
    n: int
    method: str


def wilson_interval(successes: int, total: int) -> Estimate:
    """Proportion ``successes / total`` with its 95% Wilson score interval."""
    if not 0 <= successes <= total:
        raise ValueError(f"wilson_interval: need 0 <= successes <= total, got {successes}/{total}")
    if total == 0:
        return Estimate(mean=None, low=None, high=None, n=0, method="wilson")
    proportion = successes / total
    z2 = Z_95 * Z_95
    centre = (proportion + z2 / (2 * total)) / (1 + z2 / total)
    half = (Z_95 * math.sqrt(proportion * (1 - proportion) / total + z2 / (4 * total * total))) / (
        1 + z2 / total
    )
    # The interval contains the proportion; the clamps only undo float rounding (0/50 gave a
    # low of 7e-18 > 0, which a plot turns into a negative error bar).
    return Estimate(
        mean=proportion,
        low=min(proportion, max(0.0, centre - half)),
        high=max(proportion, min(1.0, centre + half)),
        n=total,
        method="wilson",
    )


def mean_interval(values: Sequence[float], bounds: tuple[float, float] | None = None) -> Estimate:
    """Mean with the normal-approximation 95% interval (sample std, clipped to ``bounds``).

    With one value the interval is that value (no spread can be estimated).
    """
    count = len(values)
    if count == 0:
        return Estimate(mean=None, low=None, high=None, n=0, method="normal")
    mean = math.fsum(values) / count
    if count == 1:
        return Estimate(mean=mean, low=mean, high=mean, n=1, method="normal")
    variance = math.fsum((value - mean) ** 2 for value in values) / (count - 1)
    half = Z_95 * math.sqrt(variance / count)
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(float(bounds[0]), low), min(float(bounds[1]), high)
    return Estimate(mean=mean, low=low, high=high, n=count, method="normal")


# Resampled indices are drawn in blocks of about this many, so that memory stays bounded (a few
# MiB) however many values and resamples there are.
_BOOTSTRAP_BLOCK = 1 << 20


def bootstrap_means(values: Sequence[float], resamples: int, seed: int) -> np.ndarray:
    """Means of ``resamples`` bootstrap resamples of ``values``, shape ``(resamples,)``.

    Each resample draws ``len(values)`` indices uniformly with replacement; the draws come from
    ``numpy.random.default_rng(seed)``, so the result depends only on the values, ``resamples``
    and ``seed``. Resampling the per-question differences of two arms is the paired bootstrap:
    every resample takes the same questions from both arms.
    """
    data = np.asarray(values, dtype=np.float64)
    if data.ndim != 1 or data.size == 0:
        raise ValueError(f"bootstrap_means: need a non-empty 1-D array, got shape {data.shape}")
    if resamples < 1:
        raise ValueError(f"bootstrap_means: need resamples >= 1, got {resamples}")
    count = data.size
    rng = np.random.default_rng(seed)
    rows = max(1, _BOOTSTRAP_BLOCK // count)
    means = np.empty(resamples)
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        indices = rng.integers(0, count, size=(stop - start, count), dtype=np.int32)
        means[start:stop] = data[indices].mean(axis=1)
    return means


def percentile_interval(samples: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of ``samples`` (1-D).

    The order statistics are rounded outwards (the lower one down, the upper one up), never
    interpolated, so both ends are values of ``samples`` and the interval is never too narrow.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"percentile_interval: need 0 < confidence < 1, got {confidence}")
    tail = (1.0 - confidence) / 2
    low = np.quantile(samples, tail, method="lower")
    high = np.quantile(samples, 1.0 - tail, method="higher")
    return float(low), float(high)


def bootstrap_interval(values: Sequence[float], resamples: int = 2000, seed: int = 0) -> Estimate:
    """Mean with a 95% percentile-bootstrap interval (reproducible for a given ``seed``)."""
    count = len(values)
    if count == 0:
        return Estimate(mean=None, low=None, high=None, n=0, method="bootstrap")
    low, high = percentile_interval(bootstrap_means(values, resamples, seed))
    return Estimate(mean=math.fsum(values) / count, low=low, high=high, n=count, method="bootstrap")
