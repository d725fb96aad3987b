"""What the built-in generated datasets share: a train/test split that is a pure function of the
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


def check_split(split: str) -> Split:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return split  # type: ignore[return-value]


def draw_distinct(
    draw: Callable[[], T],
    question_of: Callable[[T], str],
    *,
    split: Split,
    count: int,
    name: str,
    max_attempts_per_item: int = 200,
) -> list[T]:
    """Call ``draw()`` until ``count`` items with distinct questions in ``split`` are collected.

    Fails with a clear message when the generator runs out of new questions (a small world).
    """
    items: list[T] = []
    seen: set[str] = set()
    attempts = 0
    limit = max_attempts_per_item * max(count, 10)
    while len(items) < count:
        attempts += 1
        if attempts > limit:
            raise ValueError(
                f"{name}: only {len(items)} distinct {split} questions could be generated "
                f"({count} requested); ask for fewer or use a larger world"
            )
        item = draw()
        question = question_of(item)
        if question in seen or split_of(question) != split:
            continue
        seen.add(question)
        items.append(item)
    return items
