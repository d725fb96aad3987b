"""Type stub of the compiled module swirl._native (see csrc/)."""

from collections.abc import Callable, Iterable
from typing import TypeVar

import numpy as np

A = TypeVar("A")

MAX_TAG_LENGTH: int

def parse_action(text: str, factory: Callable[[str, str, str, int, int, str | None], A]) -> A: ...
def parse_actions(
    texts: Iterable[str], factory: Callable[[str, str, str, int, int, str | None], A]
) -> list[A]: ...
def scan_actions(texts: list[str]) -> np.ndarray: ...
def find_action_stop(text: str, search_from: int = 0) -> int: ...
def is_python_space(codepoint: int) -> bool: ...

MAX_ROW_TOKENS: int

def pack(
    sequences: list[object],
    max_tokens: int,
    share_prefixes: bool,
    vocab_size: int,
    pad_id: int,
) -> dict[str, object]: ...
