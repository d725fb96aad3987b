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
    ``group``: the id of what it was drawn for, a state or a question (the baseline's group);
    ``logprobs``: per action, the sampler's log-prob of each of its tokens (None where the
    backend gave none, and for recorded actions).
    """

    actions: tuple[tuple[State, list[int]], ...]
    reward: float | None
    group: int
    logprobs: tuple[list[float] | None, ...] | None = None

    @classmethod
    def single(
        cls,
        state: State,
        tokens: list[int],
        reward: float | None,
        group: int,
        logprobs: list[float] | None = None,
    ) -> ActionSample:
        """One action at one state."""
        return cls(((state, tokens),), reward, group, (logprobs,))

    @property
    def state(self) -> State:
        """The state of the (first) action."""
        return self.actions[0][0]

    @property
    def num_tokens(self) -> int:
        """Tokens of all its actions: the targets it adds to the loss."""
        return sum(len(tokens) for _, tokens in self.actions)

    def fits(self, max_tokens: int) -> bool:
        """Whether every action with its state fits in a packed row of ``max_tokens``."""
        return all(state.offset + len(tokens) <= max_tokens for state, tokens in self.actions)

    def action_logprobs(self, index: int) -> list[float] | None:
        """The sampler's log-probs of action ``index``, or None."""
        return None if self.logprobs is None else self.logprobs[index]


@dataclass(frozen=True)
class Trees:
    """Token trees of some samples for the packer.

    ``branch_sample``: ``[B]`` int64, the index (into the samples given) of the sample each
    branch belongs to, in the packer's global branch order (sequences in order, then their
    branches). ``behavior_logp``: ``[M]`` float32 sampler log-probs of every target in the
    packer's target order (branch by branch, token by token), or None when a branch has none.
    """

    sequences: list[TreeSequence]
    branch_sample: np.ndarray
    behavior_logp: np.ndarray | None


def build_sequences(
    samples: Sequence[ActionSample],
    *,
    share: bool = True,
    max_tokens: int | None = None,
) -> Trees:
    """Token trees for the packer: a Branch (weight 1) per action of every sample.

    With ``share`` one TreeSequence per trajectory, its context the trajectory's token sequence
    (the packer drops what follows the last branch); without it the naive layout (the reference
    for speed): every action is its own sequence with its full state as context. With
    ``max_tokens`` (the packer's row size) a trajectory's actions are split over as many
    TreeSequences as needed for each tree to fit a row (every sample must :meth:`fit
    <ActionSample.fits>`). Actions with no tokens are skipped (nothing to score).
    """
    groups: dict[object, list[tuple[State, np.ndarray, int, list[float] | None]]] = {}
    for index, sample in enumerate(samples):
        if max_tokens is not None and not sample.fits(max_tokens):
            raise ValueError(
                f"sample {index} (trajectory {sample.state.trajectory_id}) does not fit in a "
                f"row of {max_tokens} tokens"
            )
        for position, (state, tokens) in enumerate(sample.actions):
            if tokens:
                key = state.trajectory_id if share else len(groups)
                entry = (
                    state,
                    np.asarray(tokens, np.int32),
                    index,
                    sample.action_logprobs(position),
                )
                groups.setdefault(key, []).append(entry)
    sequences: list[TreeSequence] = []
    owners: list[int] = []
    behavior: list[list[float] | None] = []
    for actions in groups.values():
        for chunk in _fitting_chunks(actions, max_tokens):
            first = chunk[0][0]
            context = first.sequence if share else first.state_token_ids
            sequences.append(
                TreeSequence(
                    context, [Branch(state.offset, tokens) for state, tokens, _, _ in chunk]
                )
            )
            owners += [owner for _, _, owner, _ in chunk]
            behavior += [logprobs for _, _, _, logprobs in chunk]
    known = all(b is not None for b in behavior)
    return Trees(
        sequences,
        np.asarray(owners, dtype=np.int64),
        np.concatenate([np.asarray(b, np.float32) for b in behavior]).astype(np.float32)
        if known and behavior
        else (np.zeros(0, np.float32) if known else None),
    )


def _fitting_chunks(
    actions: list[tuple[State, np.ndarray, int, list[float] | None]], max_tokens: int | None
) -> list[list[tuple[State, np.ndarray, int, list[float] | None]]]:
    """Consecutive runs of one trajectory's actions whose tree fits ``max_tokens``: a tree is at
    most its context up to the deepest attachment point plus every branch's tokens."""
    if max_tokens is None:
        return [actions]
    chunks: list[list] = [[]]
    deepest = branch_tokens = 0
    for action in actions:
        state, tokens = action[0], action[1]
        if chunks[-1] and max(deepest, state.offset) + branch_tokens + len(tokens) > max_tokens:
            chunks.append([])
            deepest = branch_tokens = 0
        chunks[-1].append(action)
        deepest = max(deepest, state.offset)
        branch_tokens += len(tokens)
    return chunks
