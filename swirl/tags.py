"""Reading the action out of a model's turn.

A turn is free reasoning followed by exactly one tagged action::

    <search_query>Q</search_query>   <math_exp>E</math_exp>   <answer>A</answer>

Rules (identical in the native scanner and the reference below):

- the first action tag in the text decides; its element ends at the first matching closing tag
  after it, and anything after ``end`` is not part of the action;
- no tag at all -> ``"none"`` (``start == end == -1``, ``thought`` is the stripped text);
- a closing tag before any opening tag -> ``"invalid"``, ``stray closing tag </x>``;
- an opening tag never closed -> ``"invalid"``, ``unclosed <x>`` (``end`` is the text length);
- another action tag inside the payload -> ``"invalid"``, ``nested <y> inside <x>``;
- an empty or whitespace-only payload -> ``"invalid"``, ``empty <x>``;
- ``payload`` is stripped (``str.strip`` whitespace) and empty for invalid actions; ``thought`` is
  the stripped text before the tag. Offsets are Python string indices (code points).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

from swirl import _native
from swirl.schema import Action

TAG_NAMES = {"search_query": "search", "math_exp": "math", "answer": "answer"}
OPEN_TAGS = {kind: f"<{name}>" for name, kind in TAG_NAMES.items()}
CLOSE_TAGS = {kind: f"</{name}>" for name, kind in TAG_NAMES.items()}
MAX_TAG_LENGTH: int = _native.MAX_TAG_LENGTH

_TAG_RE = re.compile(r"<(/?)(search_query|math_exp|answer)>")
_CLOSE_RE = re.compile(r"</(?:search_query|math_exp|answer)>")


def parse_action(text: str) -> Action:
    """Parse one turn with the native scanner. O(len(text)), no copies of the text."""
    return _native.parse_action(text, Action)


def parse_actions(texts: Iterable[str]) -> list[Action]:
    """Parse many turns in one native call (the fast path for batches)."""
    return _native.parse_actions(texts if isinstance(texts, list) else list(texts), Action)


def find_action_stop(text: str, search_from: int = 0) -> int:
    """Index just past the first closing action tag starting at or after ``search_from``; -1 if none.

    Generation stops there: the action is complete (or, if malformed, will not improve).
    """
    return _native.find_action_stop(text, search_from)


# Columns of :func:`scan_actions` (one row per turn, int64).
SCAN_COLUMNS = (
    "kind",  # index into KINDS
    "error",  # index into ERRORS
    "tag",  # index into TAGS of the deciding tag, -1 if none
    "nested_tag",  # index into TAGS of the tag nested in the payload, -1 if none
    "start",
    "end",
    "payload_begin",  # stripped payload span (valid actions; 0, 0 otherwise)
    "payload_end",
    "thought_begin",  # stripped span of the text before the tag
    "thought_end",
)
KINDS = ("none", "search", "math", "answer", "invalid")
ERRORS = (None, "unclosed", "empty", "nested", "stray")
TAGS = (*OPEN_TAGS.values(), *CLOSE_TAGS.values())


def scan_actions(texts: list[str]) -> np.ndarray:
    """Scan many turns without building any Python object per turn: ``[N, 10]`` int64, columns
    :data:`SCAN_COLUMNS` (kinds, error codes, tag indices, code-point spans). For statistics or
    filtering over millions of turns; :func:`parse_actions` gives the Action objects."""
    return _native.scan_actions(texts)


def _stripped(text: str, begin: int, end: int) -> tuple[int, int]:
    """The span of ``text[begin:end].strip()`` inside ``text`` (``(end, end)`` if it is empty)."""
    part = text[begin:end]
    left = len(part) - len(part.lstrip())
    return (begin + left, begin + left + len(part.strip())) if part.strip() else (end, end)


def scan_action_py(text: str) -> tuple[int, ...]:
    """Pure-Python reference of one row of :func:`scan_actions` (``re``-based)."""
    first = _TAG_RE.search(text)
    if first is None:
        return (0, 0, -1, -1, -1, -1, 0, 0, *_stripped(text, 0, len(text)))
    start = first.start()
    tag = TAGS.index(first.group(0))
    thought = _stripped(text, 0, start)
    if first.group(1):
        return (4, 4, tag, -1, start, first.end(), 0, 0, *thought)
    close = TAGS[tag + 3]
    inner = _TAG_RE.search(text, first.end())
    if inner is not None and inner.group(0) == close:
        payload = _stripped(text, first.end(), inner.start())
        if payload[0] == payload[1]:
            return (4, 2, tag, -1, start, inner.end(), 0, 0, *thought)
        return (tag + 1, 0, tag, -1, start, inner.end(), *payload, *thought)
    matching = -1 if inner is None else text.find(close, inner.start() + 1)
    if matching < 0:
        return (4, 1, tag, -1, start, len(text), 0, 0, *thought)
    return (4, 3, tag, TAGS.index(inner.group(0)), start, matching + len(close), 0, 0, *thought)


def error_message(error: int, tag: int, nested_tag: int) -> str | None:
    """The ``Action.error`` text of a scan row's error code and tag indices."""
    name = ERRORS[error]
    if name is None:
        return None
    if name == "stray":
        return f"stray closing tag {TAGS[tag]}"
    if name == "nested":
        return f"nested {TAGS[nested_tag]} inside {TAGS[tag]}"
    return f"{name} {TAGS[tag]}"


def parse_action_py(text: str) -> Action:
    """Pure-Python reference of :func:`parse_action` (built on :func:`scan_action_py`)."""
    kind, error, tag, nested, start, end, p0, p1, t0, t1 = scan_action_py(text)
    return Action(
        KINDS[kind], text[p0:p1], text[t0:t1], start, end, error_message(error, tag, nested)
    )


def find_action_stop_py(text: str, search_from: int = 0) -> int:
    """Pure-Python reference of :func:`find_action_stop`."""
    match = _CLOSE_RE.search(text, max(search_from, 0))
    return -1 if match is None else match.end()


class ActionStopScanner:
    """Incremental stop check for streamed generation: feed text chunks, learn where to stop.

    Each call rescans only the new chunk plus the last ``MAX_TAG_LENGTH - 1`` characters, so a tag
    split across chunks is still found without rescanning the whole text.
    """

    def __init__(self) -> None:
        self.text = ""
        self.stop: int = -1

    def feed(self, chunk: str) -> int:
        """Append ``chunk``; return the stop index in the whole text so far, or -1."""
        if self.stop >= 0:
            return self.stop
        search_from = max(len(self.text) - (MAX_TAG_LENGTH - 1), 0)
        self.text += chunk
        self.stop = find_action_stop(self.text, search_from)
        return self.stop
