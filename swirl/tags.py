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


def parse_action_py(text: str) -> Action:
    """Pure-Python reference of :func:`parse_action` (``re``-based, same semantics)."""
    first = _TAG_RE.search(text)
    if first is None:
        return Action("none", "", text.strip(), -1, -1, None)
    start = first.start()
    thought = text[:start].strip()
    name = first.group(2)
    if first.group(1):
        return Action("invalid", "", thought, start, first.end(), f"stray closing tag </{name}>")
    close = f"</{name}>"
    inner = _TAG_RE.search(text, first.end())
    if inner is not None and inner.group(0) == close:
        payload = text[first.end() : inner.start()].strip()
        if not payload:
            return Action("invalid", "", thought, start, inner.end(), f"empty <{name}>")
        return Action(TAG_NAMES[name], payload, thought, start, inner.end(), None)
    matching = -1 if inner is None else text.find(close, inner.start() + 1)
    if matching < 0:
        return Action("invalid", "", thought, start, len(text), f"unclosed <{name}>")
    error = f"nested {inner.group(0)} inside <{name}>"
    return Action("invalid", "", thought, start, matching + len(close), error)


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
