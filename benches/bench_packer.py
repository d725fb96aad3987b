"""Native packer vs its pure-Python reference, and vs a plain numpy concatenation of the same tokens.

10,000 synthetic trajectories (a 256-token shared prompt, 5 steps, 4 sampled actions per step,
action/result/sample lengths 8-40 tokens: ~9.8M input tokens, 200k branches), rows of 8,192.
Goals: native >= 30x faster than the reference; native within 5x of ``np.concatenate``.

    .venv/bin/pytest benches/bench_packer.py --benchmark-enable -s
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from benches.timing import best_of
from benches.trajectories import synthetic_trajectories
from swirl.packing import TreeSequence, pack, pack_py

TRAJECTORIES = 10_000
MAX_TOKENS = 8192


def concatenate_tokens(sequences: list[TreeSequence]) -> np.ndarray:
    """The floor: every input array (contexts and branches) copied into one."""
    return np.concatenate(
        [a for s in sequences for a in (s.context, *(b.tokens for b in s.branches))]
    )


@pytest.fixture(scope="module")
def trajectories() -> list[TreeSequence]:
    return synthetic_trajectories(np.random.default_rng(0), TRAJECTORIES)


def test_pack_native_vs_reference_and_concatenation(benchmark, trajectories):
    batch = benchmark.pedantic(
        pack, args=(trajectories, MAX_TOKENS), rounds=5, warmup_rounds=1, iterations=1
    )
    native = (
        benchmark.stats.stats.min
        if benchmark.stats
        else best_of(lambda: pack(trajectories, MAX_TOKENS), 5)
    )
    concatenation = best_of(lambda: concatenate_tokens(trajectories), 5)
    start = time.perf_counter()
    reference = pack_py(trajectories, MAX_TOKENS)
    python = time.perf_counter() - start
    for name, array in batch.arrays().items():
        np.testing.assert_array_equal(array, reference.arrays()[name], err_msg=name)

    inputs = sum(s.context.size + sum(b.tokens.size for b in s.branches) for s in trajectories)
    rows, length = batch.shape
    print(
        f"\n{TRAJECTORIES} trajectories, {batch.num_branches} branches, {inputs:,} input tokens "
        f"-> {rows} rows x {length}; tokens naive {batch.naive_tokens:,}, packed "
        f"{batch.packed_tokens:,} (ratio {batch.ratio:.1f}x)\n"
        f"native {native * 1e3:.0f} ms | python reference {python:.1f} s "
        f"-> native is {python / native:.0f}x faster (goal >= 30x)\n"
        f"np.concatenate of the same arrays {concatenation * 1e3:.0f} ms "
        f"-> native / concatenate = {native / concatenation:.1f}x (goal <= 5x)"
    )
