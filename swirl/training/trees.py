"""From rewarded actions to the packer's token trees.

All states of one trajectory are prefixes of its token sequence, so the actions drawn at any of
its states become branches of one :class:`~swirl.packing.TreeSequence` whose context is that
sequence: the shared tokens are computed once, and no state is copied or compared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from swirl.packing import Branch, TreeSequence
from swirl.training.states import State


@dataclass(frozen=True, slots=True)
class ActionSample:
    """What one reward is given to: one action (the step-wise modes) or every action of a sampled
    trajectory (outcome mode).

    ``actions``: (state, token ids) pairs, each action's ids exactly as sampled (online, outcome)
    or recorded (offline, SFT); ``reward``: None when the judge could not decide (dropped);
    ``group``: the id of what it was drawn for, a state or a question (the baseline's group).
    """

    actions: tuple[tuple[State, list[int]], ...]
    reward: float | None
    group: int

    @classmethod
    def single(
        cls, state: State, tokens: list[int], reward: float | None, group: int
    ) -> ActionSample:
        """One action at one state."""
        return cls(((state, tokens),), reward, group)

    @property
    def state(self) -> State:
        """The state of the (first) action."""
        return self.actions[0][0]


def build_sequences(
    samples: Sequence[ActionSample], weights: Sequence[float], *, share: bool = True
) -> list[TreeSequence]:
    """Token trees for the packer: a Branch per action, weighted by its sample's ``weights[i]``.

    With ``share`` one TreeSequence per trajectory, its context the trajectory's token sequence
    (the packer drops what follows the last branch); without it the naive layout (the reference
    for speed): every action is its own sequence with its full state as context. Actions with no
    tokens are skipped (nothing to score).
    """
    if len(weights) != len(samples):
        raise ValueError(f"got {len(weights)} weights for {len(samples)} samples")
    groups: dict[object, list[tuple[State, list[int], float]]] = {}
    for sample, weight in zip(samples, weights, strict=True):
        for state, tokens in sample.actions:
            if tokens:
                key = state.trajectory_id if share else len(groups)
                groups.setdefault(key, []).append((state, tokens, float(weight)))
    sequences: list[TreeSequence] = []
    for actions in groups.values():
        first = actions[0][0]
        context = first.sequence if share else first.state_token_ids
        branches = [
            Branch(state.offset, np.asarray(tokens, dtype=np.int32), weight)
            for state, tokens, weight in actions
        ]
        sequences.append(TreeSequence(context, branches))
    return sequences
