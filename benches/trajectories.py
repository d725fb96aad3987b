"""Synthetic SWiRL trajectories for the benchmarks (token ids only; shapes like the demo's)."""

from __future__ import annotations

import numpy as np

from swirl.packing import Branch, TreeSequence


def synthetic_trajectories(
    rng: np.random.Generator,
    count: int,
    *,
    prompt: int = 256,
    steps: int = 5,
    samples: int = 4,
    span: tuple[int, int] = (8, 40),
    vocab: int = 49_152,
) -> list[TreeSequence]:
    """`count` trajectories sharing one `prompt`-token instruction prefix. Each of the `steps`
    states gets `samples` sampled actions as branches; between states the context grows by the
    recorded action and its tool result. Action, result and sample lengths are uniform in `span`."""
    instructions = rng.integers(0, vocab, prompt, dtype=np.int32)
    low, high = span
    out = []
    for _ in range(count):
        pieces, length, branches = [instructions], prompt, []
        for _ in range(steps):
            for _ in range(samples):
                tokens = rng.integers(0, vocab, rng.integers(low, high + 1), dtype=np.int32)
                branches.append(Branch(length, tokens, float(rng.normal())))
            step = rng.integers(0, vocab, rng.integers(low, high + 1) * 2, dtype=np.int32)
            pieces.append(step)  # the recorded action and the tool result it produced
            length += step.size
        out.append(TreeSequence(np.concatenate(pieces), branches))
    return out
