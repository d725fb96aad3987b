"""Label a trajectory file with a judge: streamed, batched, resumable, with a progress bar.

The output is append-only: each labelled trajectory is written (and flushed) as soon as its batch
is judged, and a rerun skips every trajectory id already in the output, so a crash or Ctrl-C
loses at most the batch in flight.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import msgspec

from swirl.jsonl import JsonlReader, JsonlWriter
from swirl.judge.base import Judge, Mode
from swirl.schema import Example, Judgment, Trajectory


class _Id(msgspec.Struct):
    id: str


class LabelCounts(msgspec.Struct):
    """What one labelling run did (``skipped``: already in the output from an earlier run)."""

    trajectories: int = 0
    skipped: int = 0
    steps_good: int = 0
    steps_bad: int = 0
    steps_unknown: int = 0
    outcome_yes: int = 0
    outcome_no: int = 0
    outcome_unknown: int = 0

    def add(self, trajectory: Trajectory, mode: Mode) -> None:
        self.trajectories += 1
        if mode != "outcome":
            for step in trajectory.steps:
                self._tally(("steps_unknown", "steps_good", "steps_bad"), step.process)
        if mode != "process":
            self._tally(("outcome_unknown", "outcome_yes", "outcome_no"), trajectory.outcome)

    def _tally(self, fields: tuple[str, str, str], label: Judgment | None) -> None:
        """Count ``label`` in the unknown, positive or negative field of ``fields``."""
        verdict = label.verdict if label is not None else None
        field = fields[0] if verdict is None else fields[1] if verdict else fields[2]
        setattr(self, field, getattr(self, field) + 1)


def labelled_ids(path: str | os.PathLike[str]) -> set[str]:
    """Ids of the trajectories already in an output file (empty if it does not exist)."""
    if not Path(path).exists():
        return set()
    return {record.id for record in JsonlReader(path, _Id)}


def count_records(path: str | os.PathLike[str]) -> int:
    """Non-blank lines of a JSONL file (for a progress total)."""
    with Path(path).open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def _batches(
    source: str | os.PathLike[str], done: set[str], size: int, counts: LabelCounts
) -> Iterator[list[Trajectory]]:
    batch: list[Trajectory] = []
    for trajectory in JsonlReader(source, Trajectory):
        if trajectory.id in done:
            counts.skipped += 1
            continue
        batch.append(trajectory)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def label_file(
    judge: Judge,
    examples: Mapping[str, Example],
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    mode: Mode,
    *,
    batch_size: int = 16,
    progress: bool = True,
) -> LabelCounts:
    """Judge every trajectory of ``source`` not yet in ``target`` and append it there.

    ``examples`` maps example ids to their gold annotations; a trajectory whose example is
    missing is an error naming both (the wrong ``--data`` was given).
    """
    from tqdm import tqdm

    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    counts = LabelCounts()
    with JsonlWriter(target) as writer:  # opening drops a torn last line of a killed run
        done = labelled_ids(target)
        total = count_records(source)
        bar = tqdm(total=total, unit="traj", desc=f"judging ({judge.name})", disable=not progress)
        with bar:
            for batch in _batches(source, done, batch_size, counts):
                pairs = []
                for trajectory in batch:
                    example = examples.get(trajectory.example_id)
                    if example is None:
                        raise ValueError(
                            f"{source}: trajectory {trajectory.id} is for example "
                            f"{trajectory.example_id!r}, which the given data does not contain"
                        )
                    pairs.append((example, trajectory))
                for labelled in judge.judge(pairs, mode):
                    writer.write(labelled)
                    counts.add(labelled, mode)
                bar.update(counts.skipped + counts.trajectories - bar.n)
            bar.update(counts.skipped + counts.trajectories - bar.n)
    return counts
