"""The training states of Stage 2: every prefix ``s_i`` of every filtered trajectory, as views.

A trajectory's states are prefixes of one recorded token sequence (prompt, then each action and
its observation), so a :class:`State` is that shared sequence and an offset: no state is copied,
and the states of one trajectory feed ``Branch(offset=...)`` of one packed tree directly.

States are drawn in a seeded shuffled order, epoch after epoch. The stream's only state is how
many states it has handed out (``position``), so a checkpoint stores one integer and a resumed
run draws exactly the states the uninterrupted run would have drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from swirl.schema import Action, Judgment, Step, Trajectory


def token_sequence(trajectory: Trajectory) -> np.ndarray:
    """``[T]`` int32: the prompt, then every action followed by its observation, exactly as
    recorded (the context the model saw before action i is the first ``offsets[i]`` tokens)."""
    parts = [trajectory.prompt_token_ids]
    for step in trajectory.steps:
        parts += [step.token_ids, step.observation_token_ids]
    return np.fromiter((t for part in parts for t in part), dtype=np.int32)


@dataclass(frozen=True, slots=True, eq=False)
class State:
    """State ``s_i`` of a trajectory: the first ``offset`` tokens of its ``sequence`` (shared
    by all its states, never copied), and the recorded action ``a_i`` that followed."""

    trajectory: Trajectory
    step_index: int
    offset: int
    sequence: np.ndarray

    @property
    def trajectory_id(self) -> str:
        return self.trajectory.id

    @property
    def example_id(self) -> str:
        return self.trajectory.example_id

    @property
    def step(self) -> Step:
        return self.trajectory.steps[self.step_index]

    @property
    def action(self) -> Action:
        return self.step.action

    @property
    def action_token_ids(self) -> list[int]:
        return self.step.token_ids

    @property
    def process(self) -> Judgment | None:
        return self.step.process

    @property
    def state_token_ids(self) -> np.ndarray:
        """``[offset]`` int32 view of the context before the action (no copy)."""
        return self.sequence[: self.offset]


def trajectory_states(trajectory: Trajectory) -> list[State]:
    """The K states of a K-action trajectory, views of one shared token sequence."""
    sequence = token_sequence(trajectory)
    states, offset = [], len(trajectory.prompt_token_ids)
    for index, step in enumerate(trajectory.steps):
        states.append(State(trajectory, index, offset, sequence))
        offset += len(step.token_ids) + len(step.observation_token_ids)
    return states


def training_states(trajectories: Sequence[Trajectory]) -> list[State]:
    """All states of the given trajectories, in file order."""
    return [state for trajectory in trajectories for state in trajectory_states(trajectory)]


class StateStream:
    """Endless seeded shuffle over ``states``; ``take(n)`` advances ``position`` by ``n``."""

    def __init__(self, states: Sequence[State], *, seed: int, position: int = 0) -> None:
        if not states:
            raise ValueError("no training states: the trajectory file holds no steps")
        self.states = states
        self.seed = seed
        self.position = position

    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.states))

    def take(self, count: int) -> list[State]:
        out: list[State] = []
        size = len(self.states)
        while len(out) < count:
            epoch, offset = divmod(self.position, size)
            chunk = self._order(epoch)[offset : offset + count - len(out)]
            out.extend(self.states[i] for i in chunk)
            self.position += len(chunk)
        return out
