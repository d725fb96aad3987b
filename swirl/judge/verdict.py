"""Reading a verdict word (GOOD/BAD, YES/NO) out of a judge's free-text reply.

The judge is asked to reason first and give its verdict last, so the *last* verdict word in the
reply decides. Matching is on whole words, case-insensitive, after Unicode NFKC normalisation (so
fullwidth ``ＧＯＯＤ`` and ``**GOOD**`` both count, ``GOODNESS`` and ``NO_GOOD`` do not).

Negation: a positive word directly after ``not``/``never``/a ``-n't`` word ("NOT GOOD",
"isn't YES") reads as the negative verdict. A negated negative word ("not BAD") is ambiguous and is
ignored, so an earlier verdict word (or None) decides: an unclear reply is never counted as positive.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_NEGATORS = frozenset({"not", "never"})
# Apostrophe-like characters NFKC leaves alone; folded to ' so "isn’t" is a negator too.
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})


# Markdown emphasis with underscores (_GOOD_, __GOOD__): unwrapped first, because "_" is a word
# character and would otherwise glue itself to the verdict word ("NO_GOOD" stays one word).
_UNDERSCORE_EMPHASIS = re.compile(r"(?<!\w)(_{1,3})([^\s_](?:[^_]*?[^\s_])?)\1(?!\w)")


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).casefold()
    return _UNDERSCORE_EMPHASIS.sub(r"\2", text)


@lru_cache(maxsize=64)
def _verdict_pattern(positive: str, negative: str) -> re.Pattern[str]:
    """Whole-word matcher of the two verdict words (already normalised)."""
    words = sorted({positive, negative}, key=len, reverse=True)
    alternatives = "|".join(re.escape(word) for word in words)
    # A verdict word may not touch another word character on either side ("GOODNESS", "NO_GOOD",
    # "2GOOD"); punctuation, markdown and quotes around it are fine.
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")


# The word right before a verdict, skipping only spaces, markdown emphasis and quotes between them
# ("not **GOOD**" is negated, "not. GOOD" is not).
_WORD_BEFORE = re.compile(r"(?<![\w'])([\w']+)[\s*_~\"'«»“”„]*$")


def _is_negator(word: str | None) -> bool:
    return word is not None and (word in _NEGATORS or word.endswith("n't"))


def parse_verdict(text: str, positive: str = "GOOD", negative: str = "BAD") -> bool | None:
    """The judge's verdict: True for ``positive``, False for ``negative``, None when absent.

    ``text`` is the judge's whole reply; the last verdict word decides (see the module docstring
    for negation). Both words are single words (e.g. "GOOD"/"BAD" or "YES"/"NO").
    """
    if not positive.strip() or not negative.strip():
        raise ValueError("parse_verdict: positive and negative verdict words must be non-empty")
    if _normalise(positive) == _normalise(negative):
        raise ValueError(f"parse_verdict: positive and negative are the same word {positive!r}")
    positive_word, negative_word = _normalise(positive), _normalise(negative)
    normalised = _normalise(text)
    verdict: bool | None = None
    for match in _verdict_pattern(positive_word, negative_word).finditer(normalised):
        before = _WORD_BEFORE.search(normalised, max(0, match.start() - 40), match.start())
        negated = before is not None and _is_negator(before.group(1))
        if match.group() == positive_word:
            verdict = not negated
        elif not negated:
            verdict = False
    return verdict
