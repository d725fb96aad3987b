"""From (state, action) pairs to the packer's token trees.

All states of one trajectory are prefixes of its recorded token sequence, so the actions drawn at
any of its states become branches of one :class:`~swirl.packing.TreeSequence` whose context is
that sequence: the shared tokens are computed once, and no state is copied or compared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from swirl.packing import Branch, TreeSequence
from swirl.training.states import State


@dataclass(frozen=True, slots=True)
class ActionSample:
    """One action to train on at one state.

    ``tokens``: the action's token ids (sampled now in online mode, recorded in offline/SFT mode);
    ``reward``: its step reward (None when the judge could not decide: it is dropped);
    ``group``: the id of the state it was drawn at (the baseline is computed per group).
    """

    state: State
    tokens: list[int]
    reward: float | None
    group: int


def build_sequences(
    samples: Sequence[ActionSample], weights: Sequence[float], *, share: bool = True
) -> list[TreeSequence]:
    """Token trees for the packer, a Branch (weight = ``weights[i]``) per sample.

    With ``share`` one TreeSequence per trajectory, its context the trajectory's token sequence
    (the packer drops what follows the last branch); without it the naive layout (the reference
    for speed): every action is its own sequence with its full state as context. Samples with
    empty ``tokens`` are skipped (nothing to score).
    """
    if len(weights) != len(samples):
        raise ValueError(f"got {len(weights)} weights for {len(samples)} samples")
    groups: dict[str | int, list[int]] = {}
    for index, sample in enumerate(samples):
        if sample.tokens:
            key = sample.state.trajectory_id if share else index
            groups.setdefault(key, []).append(index)
    sequences: list[TreeSequence] = []
    for indices in groups.values():
        first = samples[indices[0]].state
        context = first.sequence if share else first.state_token_ids
        branches = [
            Branch(
                samples[i].state.offset,
                np.asarray(samples[i].tokens, dtype=np.int32),
                float(weights[i]),
            )
            for i in indices
        ]
        sequences.append(TreeSequence(context, branches))
    return sequences
