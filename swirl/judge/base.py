"""What every judge offers: label a batch of trajectories (process labels, outcome label, or both).

A judge never edits its input; it returns labelled copies. Each :class:`~swirl.schema.Judgment`
names the judge that produced it, so mixed or re-judged files stay traceable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

import msgspec

from swirl.schema import Example, Judgment, Trajectory

Mode = Literal["process", "outcome", "both"]
MODES: tuple[Mode, ...] = ("process", "outcome", "both")


@runtime_checkable
class Judge(Protocol):
    """Labels trajectories. ``name`` is what every Judgment it produces records as ``judge``."""

    name: str

    def judge(self, batch: Sequence[tuple[Example, Trajectory]], mode: Mode) -> list[Trajectory]:
        """Return the trajectories of ``batch`` (in order) with the labels of ``mode`` set.

        ``mode == "process"`` sets every ``step.process``, ``"outcome"`` sets ``outcome``,
        ``"both"`` sets both; labels the mode does not cover are left as they were.
        """
        ...


def with_labels(
    trajectory: Trajectory,
    process: Sequence[Judgment] | None = None,
    outcome: Judgment | None = None,
) -> Trajectory:
    """A copy of ``trajectory`` with the given process labels (one per step) and/or outcome."""
    changes: dict[str, object] = {}
    if process is not None:
        if len(process) != len(trajectory.steps):
            raise ValueError(
                f"trajectory {trajectory.id}: {len(process)} process labels for "
                f"{len(trajectory.steps)} steps"
            )
        changes["steps"] = [
            msgspec.structs.replace(step, process=label)
            for step, label in zip(trajectory.steps, process, strict=True)
        ]
    if outcome is not None:
        changes["outcome"] = outcome
    return msgspec.structs.replace(trajectory, **changes)


def check_pair(example: Example, trajectory: Trajectory) -> None:
    """Refuse to judge a trajectory against the wrong example (a mismatched --data)."""
    if example.id != trajectory.example_id:
        raise ValueError(
            f"trajectory {trajectory.id} is for example {trajectory.example_id!r}, "
            f"but was paired with example {example.id!r}"
        )


def wants_process(mode: Mode) -> bool:
    return mode in ("process", "both")


def wants_outcome(mode: Mode) -> bool:
    return mode in ("outcome", "both")
