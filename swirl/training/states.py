"""The training states of Stage 2: every prefix ``s_i`` of every filtered trajectory.

States are drawn in a seeded shuffled order, epoch after epoch. The stream's only state is how
many states it has handed out (``position``), so a checkpoint stores one integer and a resumed
run draws exactly the states the uninterrupted run would have drawn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from swirl.decompose import decompose
from swirl.schema import SubTrajectory, Trajectory


def training_states(trajectories: Sequence[Trajectory]) -> list[SubTrajectory]:
    """All sub-trajectories of the given trajectories, in file order."""
    return [state for trajectory in trajectories for state in decompose(trajectory)]


class StateStream:
    """Endless seeded shuffle over ``states``; ``take(n)`` advances ``position`` by ``n``."""

    def __init__(self, states: Sequence[SubTrajectory], *, seed: int, position: int = 0) -> None:
        if not states:
            raise ValueError("no training states: the trajectory file holds no steps")
        self.states = states
        self.seed = seed
        self.position = position

    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.states))

    def take(self, count: int) -> list[SubTrajectory]:
        out: list[SubTrajectory] = []
        size = len(self.states)
        while len(out) < count:
            epoch, offset = divmod(self.position, size)
            chunk = self._order(epoch)[offset : offset + count - len(out)]
            out.extend(self.states[i] for i in chunk)
            self.position += len(chunk)
        return out
