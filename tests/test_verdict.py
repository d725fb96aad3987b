"""parse_verdict on the messy replies real judges write."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from swirl.judge import parse_verdict


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GOOD", True),
        ("BAD", False),
        ("good", True),
        ("Bad", False),
        ("Verdict: GOOD", True),
        ("Verdict: BAD.", False),
        ("**Verdict:** **GOOD**", True),
        ("**BAD**", False),
        ("__GOOD__", True),
        ("_GOOD_", True),
        ("***BAD***", False),
        ("___BAD___", False),
        ("`GOOD`", True),
        ("Verdict: 'GOOD'", True),
        ('Verdict: "BAD"', False),
        ("Verdict: “GOOD”", True),
        ("Verdict: «BAD»", False),
        ("GOOD!", True),
        ("(BAD)", False),
        ("[GOOD]", True),
        ("Verdict:GOOD", True),
        ("verdict - bad -", False),
        # the last verdict word decides
        ("At first this looks BAD, but the query is needed. Verdict: GOOD", True),
        ("The query looks GOOD at first sight, but it repeats step 1. Verdict: BAD", False),
        ("GOOD or BAD? Let me think. ... GOOD", True),
        ("GOOD\n\nBAD", False),
        ("BAD then GOOD", True),
        # negation
        ("NOT GOOD", False),
        ("Verdict: not good", False),
        ("This is not **GOOD**", False),
        ("It isn't GOOD.", False),
        ("It isn’t GOOD.", False),
        ("It is never GOOD", False),
        ("not BAD", None),
        ("Verdict: GOOD (not BAD)", True),
        ("Is it not? GOOD", True),
        ("knot GOOD", True),
        ("cannot say. GOOD", True),
        # whole words only
        ("goodness gracious", None),
        ("badly written", None),
        ("NO_GOOD", None),
        ("GOOD_ENOUGH", None),
        ("2GOOD", None),
        ("BADGOOD", None),
        # unicode
        ("ＧＯＯＤ", True),
        ("Verdict: ＢＡＤ", False),
        ("Verdict:\u00a0GOOD", True),
        ("Verdict: GOOD\u200b", True),
        ("Urteil: GOOD ✅", True),
        ("GOODé", None),
        # nothing to read
        ("", None),
        ("I cannot decide.", None),
        ("The step is fine.", None),
    ],
)
def test_good_bad(text: str, expected: bool | None) -> None:
    assert parse_verdict(text, "GOOD", "BAD") is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("YES", True),
        ("no", False),
        ("Verdict: **Yes**", True),
        ("There is no evidence against it. Verdict: YES", True),
        ("Yes, the numbers differ, so no.", False),
        ("The answer is 10 and the key says $10. YES.", True),
        ("nope", None),
        ("yesterday", None),
        ("Not yes", False),
    ],
)
def test_yes_no(text: str, expected: bool | None) -> None:
    assert parse_verdict(text, "YES", "NO") is expected


def test_custom_words_are_escaped() -> None:
    assert parse_verdict("answer: C++", "C++", "Java") is True
    assert parse_verdict("answer: Cxx", "C++", "Java") is None


@pytest.mark.parametrize(("positive", "negative"), [("", "BAD"), ("GOOD", " "), ("GOOD", "good")])
def test_bad_words_rejected(positive: str, negative: str) -> None:
    with pytest.raises(ValueError, match="parse_verdict"):
        parse_verdict("GOOD", positive, negative)


def _nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


# Separators: no character that is (or NFKC-normalises to) a word character, e.g. "™" -> "TM".
_filler = st.text().filter(lambda text: not re.search(r"\w", _nfkc(text)))


@given(
    before=st.text(),
    between=_filler,
    word=st.sampled_from(["GOOD", "good", "**GOOD**", "BAD", "bad", "`BAD`"]),
)
def test_last_word_decides_after_any_prefix(before: str, between: str, word: str) -> None:
    """Whatever a judge wrote before, a final verdict word decides ("Verdict:" separates it from
    any negator at the end of ``before``)."""
    text = f"{before}\nVerdict: {between}{word}"
    assert parse_verdict(text, "GOOD", "BAD") is ("good" in word.lower())


@given(st.text())
def test_no_verdict_word_means_none(text: str) -> None:
    assume("good" not in _nfkc(text) and "bad" not in _nfkc(text))
    assert parse_verdict(text, "GOOD", "BAD") is None
