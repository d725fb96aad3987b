"""The paper's four trajectory filters, and a fixed output size for comparing them fairly.

- ``none``: keep every trajectory;
- ``process``: keep a trajectory only if it has steps and every step is labelled GOOD (an unknown
  label, verdict None, is not GOOD);
- ``outcome``: keep it only if its outcome label is YES;
- ``process+outcome``: both.

The paper compares strategies at equal dataset size; ``select(..., size=N, seed=X)`` draws N of the
kept trajectories uniformly without replacement, reproducibly for a seed, and keeps them in input
order.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import msgspec

from swirl.jsonl import JsonlReader
from swirl.schema import Judgment, Trajectory

Strategy = Literal["none", "process", "outcome", "process+outcome"]
STRATEGIES: tuple[Strategy, ...] = ("none", "process", "outcome", "process+outcome")


class _StepLabel(msgspec.Struct):
    process: Judgment | None = None


class TrajectoryLabels(msgspec.Struct):
    """The parts of a trajectory a filter reads; decoding only these keeps big files cheap."""

    id: str
    steps: list[_StepLabel] = []
    outcome: Judgment | None = None


Labelled = Trajectory | TrajectoryLabels


class MissingLabel(ValueError):
    """A strategy needs a label the trajectory does not have (it was not judged in that mode)."""


def _process_ok(trajectory: Labelled) -> bool:
    for index, step in enumerate(trajectory.steps):
        if step.process is None:
            raise MissingLabel(
                f"trajectory {trajectory.id} step {index} has no process label "
                "(judge with --mode process or both)"
            )
    return bool(trajectory.steps) and all(step.process.verdict is True for step in trajectory.steps)


def _outcome_ok(trajectory: Labelled) -> bool:
    if trajectory.outcome is None:
        raise MissingLabel(
            f"trajectory {trajectory.id} has no outcome label (judge with --mode outcome or both)"
        )
    return trajectory.outcome.verdict is True


def keeps(trajectory: Labelled, strategy: Strategy) -> bool:
    """Whether ``strategy`` keeps ``trajectory``; raises :class:`MissingLabel` if unjudged."""
    if strategy == "none":
        return True
    if strategy == "process":
        return _process_ok(trajectory)
    if strategy == "outcome":
        return _outcome_ok(trajectory)
    if strategy == "process+outcome":
        return _process_ok(trajectory) and _outcome_ok(trajectory)
    raise ValueError(f"unknown filter strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")


def sample_fixed_size(kept: Sequence[int], size: int, seed: int) -> list[int]:
    """``size`` of the indices ``kept``, drawn reproducibly, in ascending order."""
    if size < 0:
        raise ValueError(f"--size must be >= 0, got {size}")
    if size > len(kept):
        raise ValueError(f"cannot sample {size} trajectories from the {len(kept)} kept")
    return sorted(random.Random(seed).sample(list(kept), size))


class StrategyCount(msgspec.Struct):
    """How many trajectories and steps one strategy keeps (``None`` if labels are missing)."""

    strategy: str
    trajectories: int | None
    steps: int | None


def summarize(trajectories: Sequence[Labelled]) -> list[StrategyCount]:
    """Counts kept by each of the four strategies (before any fixed size)."""
    counts = []
    for strategy in STRATEGIES:
        try:
            kept = [t for t in trajectories if keeps(t, strategy)]
        except MissingLabel:
            counts.append(StrategyCount(strategy, None, None))
            continue
        counts.append(StrategyCount(strategy, len(kept), sum(len(t.steps) for t in kept)))
    return counts


def select_indices(
    trajectories: Sequence[Labelled], strategy: Strategy, size: int | None = None, seed: int = 0
) -> list[int]:
    """Positions of the trajectories ``strategy`` keeps, optionally down-sampled to ``size``."""
    kept = [index for index, t in enumerate(trajectories) if keeps(t, strategy)]
    if size is None:
        return kept
    try:
        return sample_fixed_size(kept, size, seed)
    except ValueError as error:
        raise ValueError(f"strategy {strategy}: {error}; lower --size") from None


def select(
    trajectories: Sequence[Trajectory], strategy: Strategy, size: int | None = None, seed: int = 0
) -> list[Trajectory]:
    """The trajectories ``strategy`` keeps, optionally down-sampled to exactly ``size``."""
    return [trajectories[i] for i in select_indices(trajectories, strategy, size, seed)]


def read_labels(path: str | os.PathLike[str]) -> list[TrajectoryLabels]:
    """The labels of every trajectory in a JSONL file (bad lines are named by file:line)."""
    return list(JsonlReader(path, TrajectoryLabels))


def copy_records(
    source: str | os.PathLike[str], target: str | os.PathLike[str], indices: Iterable[int]
) -> int:
    """Copy the records at positions ``indices`` (0-based, blank lines not counted) of ``source``
    byte for byte into ``target``, replacing it atomically; return how many were copied. The
    settings recorded with ``source`` (:mod:`swirl.settings`) are copied with them."""
    from swirl.settings import settings_path

    chosen = set(indices)
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(target.name + ".partial")
    written = 0
    with Path(source).open("rb") as reader, staging.open("wb") as writer:
        records = (line for line in reader if line.strip())
        for index, line in enumerate(records):
            if index in chosen:
                writer.write(line if line.endswith(b"\n") else line + b"\n")
                written += 1
    staging.replace(target)
    if settings_path(source).exists():
        settings_path(target).write_bytes(settings_path(source).read_bytes())
    return written
