"""The native tag scanner against its Python reference, on a table of cases and random text."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swirl import _native
from swirl.schema import Action
from swirl.tags import (
    KINDS,
    SCAN_COLUMNS,
    ActionStopScanner,
    error_message,
    find_action_stop,
    find_action_stop_py,
    parse_action,
    parse_action_py,
    parse_actions,
    scan_action_py,
    scan_actions,
)

CASES = [
    # (text, kind, payload, thought, start, end, error)
    ("", "none", "", "", -1, -1, None),
    ("  just thinking \n", "none", "", "just thinking", -1, -1, None),
    (
        "<search_query>capital of France</search_query>",
        "search",
        "capital of France",
        "",
        0,
        46,
        None,
    ),
    (
        "Need the area. <math_exp> 3 * 4 </math_exp>",
        "math",
        "3 * 4",
        "Need the area.",
        15,
        43,
        None,
    ),
    (
        "So: <answer>Paris</answer> and more <answer>x</answer>",
        "answer",
        "Paris",
        "So:",
        4,
        26,
        None,
    ),
    ("<answer>a</answer></answer>", "answer", "a", "", 0, 18, None),
    ("<answer>unclosed", "invalid", "", "", 0, 16, "unclosed <answer>"),
    ("t <math_exp>1+1</answer>", "invalid", "", "t", 2, 24, "unclosed <math_exp>"),
    ("</answer> then <answer>x</answer>", "invalid", "", "", 0, 9, "stray closing tag </answer>"),
    ("<answer> \t\n </answer>", "invalid", "", "", 0, 21, "empty <answer>"),
    ("<answer></answer>", "invalid", "", "", 0, 17, "empty <answer>"),
    (
        "<answer>a <search_query>q</search_query> b</answer>",
        "invalid",
        "",
        "",
        0,
        51,
        "nested <search_query> inside <answer>",
    ),
    (
        "<answer>a </math_exp> b</answer>",
        "invalid",
        "",
        "",
        0,
        32,
        "nested </math_exp> inside <answer>",
    ),
    ("<answer>a <answer>b</answer>", "invalid", "", "", 0, 28, "nested <answer> inside <answer>"),
    ("<Answer>case matters</Answer>", "none", "", "<Answer>case matters</Answer>", -1, -1, None),
    ("<answer >no</answer >", "none", "", "<answer >no</answer >", -1, -1, None),
    ("<<answer>x</answer>", "answer", "x", "<", 1, 19, None),
    ("é😀 <answer>ü</answer>", "answer", "ü", "é😀", 3, 21, None),
    ("\u3000<answer>\u2003x\u00a0</answer>", "answer", "x", "", 1, 21, None),
    ("\x1c<answer>\x85y\x1f</answer>", "answer", "y", "", 1, 21, None),
    ("\u200b<answer>\u200bz</answer>", "answer", "\u200bz", "\u200b", 1, 20, None),
]


@pytest.mark.parametrize("case", CASES, ids=[repr(c[0])[:40] for c in CASES])
def test_table(case: tuple) -> None:
    text, *expected = case
    want = Action(*expected)
    assert parse_action_py(text) == want
    assert parse_action(text) == want


def test_offsets_slice_the_element() -> None:
    text = "thinking… <math_exp>2^10</math_exp> trailing"
    action = parse_action(text)
    assert text[action.start : action.end] == "<math_exp>2^10</math_exp>"


def test_every_unicode_space_strips_like_python() -> None:
    spaces = [c for c in map(chr, range(0x110000)) if c.isspace()]
    for code in range(0x110000):
        assert _native.is_python_space(code) == chr(code).isspace(), hex(code)
    for space in spaces:
        text = f"{space}t{space}<answer>{space}a{space}</answer>"
        assert parse_action(text) == parse_action_py(text) == Action("answer", "a", "t", 3, 23)


def test_batch_matches_single() -> None:
    texts = [case[0] for case in CASES]
    assert parse_actions(texts) == [parse_action(t) for t in texts]
    assert parse_actions(iter(texts)) == [parse_action(t) for t in texts]
    assert parse_actions([]) == []


def test_non_str_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="text must be str"):
        parse_action(b"<answer>x</answer>")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="texts"):
        parse_actions(["ok", 3])  # type: ignore[list-item]


FRAGMENTS = [
    "<search_query>",
    "</search_query>",
    "<math_exp>",
    "</math_exp>",
    "<answer>",
    "</answer>",
    "<",
    ">",
    "/",
    "<answer",
    "</",
    "search_query",
    "<search_quer",
    "answer>",
    "<math_exp",
    " ",
    "\n",
    "\t",
    "\u3000",
    "\x85",
    "\xa0",
    "\u2028",
    "é",
    "😀",
    "中文",
    "Q",
    "42",
    "x*y",
]
texts = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=5)), max_size=14).map(
    "".join
)


@settings(max_examples=3000, deadline=None)
@given(texts)
def test_native_agrees_with_reference(text: str) -> None:
    assert parse_action(text) == parse_action_py(text)


@settings(max_examples=2000, deadline=None)
@given(texts, st.integers(min_value=-3, max_value=80))
def test_stop_agrees_with_reference(text: str, search_from: int) -> None:
    assert find_action_stop(text, search_from) == find_action_stop_py(text, search_from)


@settings(max_examples=500, deadline=None)
@given(texts, st.lists(st.integers(min_value=1, max_value=7), max_size=30))
def test_streamed_stop_equals_whole_text_stop(text: str, cuts: list[int]) -> None:
    scanner = ActionStopScanner()
    position, stop = 0, -1
    for size in [*cuts, len(text)]:
        stop = scanner.feed(text[position : position + size])
        position += size
        if stop >= 0 or position >= len(text):
            break
    assert stop == find_action_stop_py(text[:position])
    # Stopping there never changes the action: the whole element lies before the stop.
    if stop >= 0 and parse_action_py(text).kind not in ("none", "invalid"):
        assert parse_action_py(text[:stop]) == parse_action_py(text)


def test_stop_examples() -> None:
    text = "think <search_query>q</search_query> ignored </answer>"
    assert find_action_stop(text) == text.index("</search_query>") + len("</search_query>")
    assert find_action_stop("no tags") == -1
    assert find_action_stop("<answer>open") == -1
    assert find_action_stop("x</answer>", 99) == -1


@settings(max_examples=1500, deadline=None)
@given(st.lists(texts, max_size=6))
def test_scan_agrees_with_reference(batch: list[str]) -> None:
    rows = scan_actions(batch)
    assert rows.shape == (len(batch), len(SCAN_COLUMNS)) and rows.dtype == np.int64
    assert [tuple(row) for row in rows.tolist()] == [scan_action_py(text) for text in batch]


def test_scan_rows_rebuild_the_actions() -> None:
    batch = [case[0] for case in CASES]
    for text, row in zip(batch, scan_actions(batch).tolist(), strict=True):
        kind, error, tag, nested, start, end, p0, p1, t0, t1 = row
        assert parse_action(text) == Action(
            KINDS[kind], text[p0:p1], text[t0:t1], start, end, error_message(error, tag, nested)
        )
    with pytest.raises(TypeError, match="texts"):
        scan_actions(["ok", 1])  # type: ignore[list-item]
