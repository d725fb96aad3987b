"""From (state, action) pairs to the packer's token trees.

All states of one trajectory are prefixes of its recorded token sequence, so the actions drawn at
any of its states become branches of one :class:`~swirl.packing.TreeSequence` whose context is
the longest of those states: the shared tokens are computed once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from swirl.packing import Branch, TreeSequence
from swirl.schema import SubTrajectory


@dataclass(frozen=True, slots=True)
class ActionSample:
    """One action to train on at one state.

    ``tokens``: the action's token ids (sampled now in online mode, recorded in offline/SFT mode);
    ``reward``: its step reward (None when the judge could not decide: it is dropped);
    ``group``: the id of the state it was drawn at (the baseline is computed per group).
    """

    state: SubTrajectory
    tokens: list[int]
    reward: float | None
    group: int


def build_naive_sequences(
    samples: Sequence[ActionSample], weights: Sequence[float]
) -> tuple[list[TreeSequence], list[int]]:
    """The naive layout (the reference for speed): every action is its own sequence with its full
    state as context, so nothing is shared. Same return value as :func:`build_tree_sequences`."""
    if len(weights) != len(samples):
        raise ValueError(f"got {len(weights)} weights for {len(samples)} samples")
    sequences, order = [], []
    for index, sample in enumerate(samples):
        if not sample.tokens:
            continue
        context = np.asarray(sample.state.state_token_ids, dtype=np.int32)
        tokens = np.asarray(sample.tokens, dtype=np.int32)
        sequences.append(
            TreeSequence(context, [Branch(len(context), tokens, float(weights[index]))])
        )
        order.append(index)
    return sequences, order


def build_tree_sequences(
    samples: Sequence[ActionSample], weights: Sequence[float]
) -> tuple[list[TreeSequence], list[int]]:
    """One TreeSequence per trajectory, a Branch (weight = ``weights[i]``) per sample.

    Returns the sequences and, for each packed branch in the packer's global order (sequences in
    order, then their branches), the index of its sample. Samples with empty ``tokens`` are
    skipped (nothing to score). A state that is not a prefix of its trajectory's longest drawn
    state raises ValueError naming both.
    """
    if len(weights) != len(samples):
        raise ValueError(f"got {len(weights)} weights for {len(samples)} samples")
    by_trajectory: dict[str, list[int]] = {}
    for index, sample in enumerate(samples):
        if sample.tokens:
            by_trajectory.setdefault(sample.state.trajectory_id, []).append(index)
    sequences: list[TreeSequence] = []
    order: list[int] = []
    for trajectory_id, indices in by_trajectory.items():
        longest = max(indices, key=lambda i: len(samples[i].state.state_token_ids))
        context = np.asarray(samples[longest].state.state_token_ids, dtype=np.int32)
        branches = []
        for i in indices:
            state = samples[i].state.state_token_ids
            if not np.array_equal(context[: len(state)], state):
                raise ValueError(
                    f"trajectory {trajectory_id}: state of step {samples[i].state.step_index} is not "
                    f"a prefix of the state of step {samples[longest].state.step_index}"
                )
            tokens = np.asarray(samples[i].tokens, dtype=np.int32)
            branches.append(Branch(len(state), tokens, float(weights[i])))
            order.append(i)
        sequences.append(TreeSequence(context, branches))
    return sequences, order
