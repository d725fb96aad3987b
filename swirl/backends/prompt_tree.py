"""The prefix a batch of prompts shares.

What prompts share beyond one common prefix (a state and its longer states, the G samples of one
state) is found by the training packer's token trie (:func:`swirl.packing.pack`), which the fast
engine's prefill lays its prompts out with (:mod:`swirl.backends.fast_engine`).
"""

from __future__ import annotations

from collections.abc import Sequence


def common_prefix_length(prompts: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix every prompt starts with."""
    first = prompts[0]
    length = min(len(p) for p in prompts)
    for other in prompts[1:]:
        match = 0
        while match < length and other[match] == first[match]:
            match += 1
        length = match
    return length
