"""What ``demo-math`` and ``demo-qa`` share: a train/test split that is a pure function of the
question text, and drawing a requested number of distinct questions of one split.

Because the split depends only on the question, no seed, size or order can ever put the same
question in both splits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Literal, TypeVar

Split = Literal["train", "test"]
SPLITS: tuple[Split, ...] = ("train", "test")
TEST_PERCENT = 20

T = TypeVar("T")


def split_of(question: str) -> Split:
    """The split a generated question belongs to (about TEST_PERCENT% go to test)."""
    bucket = int.from_bytes(hashlib.sha256(question.encode()).digest()[:8], "big") % 100
    return "test" if bucket < TEST_PERCENT else "train"


def draw_distinct(
    draw: Callable[[], T],
    question_of: Callable[[T], str],
    *,
    split: Split,
    count: int,
    name: str,
) -> list[T]:
    """Call ``draw()`` until ``count`` items with distinct questions in ``split`` are collected.

    Fails with a clear message when the generator runs out of new questions (a small world): after
    more consecutive draws without a new question than 20 times the number of distinct questions
    seen so far (at least 2,000), the space is taken as exhausted.
    """
    items: list[T] = []
    seen: set[str] = set()  # every distinct question drawn, in either split
    stale = 0
    while len(items) < count:
        item = draw()
        question = question_of(item)
        if question in seen:
            stale += 1
            if stale > max(2000, 20 * len(seen)):
                raise ValueError(
                    f"{name}: only {len(items)} distinct {split} questions could be generated "
                    f"({count} requested); ask for fewer or use a larger world"
                )
            continue
        stale = 0
        seen.add(question)
        if split_of(question) == split:
            items.append(item)
    return items
