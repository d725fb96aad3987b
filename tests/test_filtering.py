"""The four filter strategies, the fixed output size, and the streaming file filter."""

from __future__ import annotations

import pytest
from trajectory_builders import QA_EXAMPLE, step, trajectory

from swirl.filtering import (
    STRATEGIES,
    MissingLabel,
    copy_records,
    keeps,
    read_labels,
    select,
    select_indices,
    summarize,
)
from swirl.jsonl import read_jsonl, write_jsonl
from swirl.schema import Trajectory


def labelled(id: str, steps: list[bool | None], outcome: bool | None) -> Trajectory:
    made = [step(f"<search_query>q{i}</search_query>", verdict=v) for i, v in enumerate(steps)]
    return trajectory(QA_EXAMPLE, made, id=id, outcome=outcome)


# id -> (process verdicts, outcome): every combination the strategies tell apart
CASES = {
    "all-good-right": ([True, True], True),
    "all-good-wrong": ([True], False),
    "one-bad-right": ([True, False], True),
    "unknown-step-right": ([True, None], True),
    "bad-wrong": ([False], False),
    "unknown-outcome": ([True], None),
    "no-steps-right": ([], True),
}
EXPECTED = {
    "none": set(CASES),
    "process": {"all-good-right", "all-good-wrong", "unknown-outcome"},
    "outcome": {"all-good-right", "one-bad-right", "unknown-step-right", "no-steps-right"},
    "process+outcome": {"all-good-right"},
}


@pytest.fixture
def trajectories() -> list[Trajectory]:
    return [labelled(id, steps, outcome) for id, (steps, outcome) in CASES.items()]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategies_keep_the_right_trajectories(trajectories, strategy) -> None:
    assert {t.id for t in select(trajectories, strategy)} == EXPECTED[strategy]
    assert {t.id for t in trajectories if keeps(t, strategy)} == EXPECTED[strategy]


def test_summary_counts_trajectories_and_steps(trajectories) -> None:
    summary = {
        count.strategy: (count.trajectories, count.steps) for count in summarize(trajectories)
    }
    assert summary == {
        "none": (7, 9),
        "process": (3, 4),
        "outcome": (4, 6),
        "process+outcome": (1, 2),
    }


def test_missing_labels_are_named(trajectories) -> None:
    unjudged = trajectory(QA_EXAMPLE, [step("<answer>x</answer>")], id="raw")
    with pytest.raises(MissingLabel, match="raw step 0 has no process label"):
        keeps(unjudged, "process")
    with pytest.raises(MissingLabel, match="raw has no outcome label"):
        keeps(unjudged, "outcome")
    assert keeps(unjudged, "none")
    counts = summarize([*trajectories, unjudged])
    assert [(c.strategy, c.trajectories) for c in counts] == [
        ("none", 8),
        ("process", None),
        ("outcome", None),
        ("process+outcome", None),
    ]


def test_fixed_size_is_reproducible_and_keeps_order(trajectories) -> None:
    many = [labelled(f"t{i:03d}", [True], i % 3 == 0) for i in range(300)]
    first = select(many, "outcome", size=40, seed=7)
    assert len(first) == 40 and all(t.outcome.verdict for t in first)
    assert [t.id for t in first] == sorted(t.id for t in first)  # input order
    assert [t.id for t in first] == [t.id for t in select(many, "outcome", size=40, seed=7)]
    assert [t.id for t in first] != [t.id for t in select(many, "outcome", size=40, seed=8)]
    # Every strategy gives exactly the requested size, so they compare at equal size.
    for strategy in STRATEGIES:
        assert len(select(many, strategy, size=100, seed=0)) == 100
    assert select(many, "none", size=0) == []


def test_size_larger_than_kept_is_an_error(trajectories) -> None:
    with pytest.raises(
        ValueError, match=r"process\+outcome: cannot sample 2 .* 1 kept; lower --size"
    ):
        select(trajectories, "process+outcome", size=2)
    with pytest.raises(ValueError, match="--size must be >= 0"):
        select(trajectories, "none", size=-1)


def test_file_filtering_copies_records_exactly(tmp_path, trajectories) -> None:
    source, target = tmp_path / "labelled.jsonl", tmp_path / "out" / "filtered.jsonl"
    write_jsonl(source, trajectories)
    labels = read_labels(source)
    assert [c.trajectories for c in summarize(labels)] == [7, 3, 4, 1]
    assert copy_records(source, target, select_indices(labels, "process")) == 3
    kept = read_jsonl(target, Trajectory)
    assert kept == [t for t in trajectories if t.id in EXPECTED["process"]]
    assert target.read_bytes() == b"".join(
        line
        for line in source.read_bytes().splitlines(keepends=True)
        if any(f'"id":"{id}"'.encode() in line for id in EXPECTED["process"])
    )
    assert not (tmp_path / "out" / "filtered.jsonl.partial").exists()
