"""How the prompts of one batch share tokens: the prefix common to all, and chains of prompts
that are prefixes of one another (the states of one trajectory, the G samples of one state).

A causal model gives a prompt's keys and values, and the logits after its last token, as a
function of that prompt's tokens only; so a prompt that is a prefix of another needs no pass of
its own: the longer prompt's pass holds both.
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


def group_chains(rests: Sequence[Sequence[int]]) -> tuple[list[int], list[int]]:
    """Group token lists so that each group's members are prefixes of its longest, the head.

    Returns ``(heads, head_of)``: ``heads`` are indices into ``rests`` (longest first), and
    ``head_of[i]`` is the index of the head whose tokens start with ``rests[i]`` (itself for a
    head). Identical lists share one head.
    """
    tuples = [tuple(r) for r in rests]
    order = sorted(range(len(tuples)), key=lambda i: -len(tuples[i]))
    heads: list[int] = []
    head_of = [0] * len(tuples)
    for index in order:
        tokens = tuples[index]
        for head in heads:
            if tuples[head][: len(tokens)] == tokens:
                head_of[index] = head
                break
        else:
            heads.append(index)
            head_of[index] = index
    return heads, head_of
