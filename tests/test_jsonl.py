"""Streaming JSONL: round trips, errors that name file and line, skip-and-count, torn tails."""

from __future__ import annotations

from pathlib import Path

import pytest

from swirl.jsonl import JsonlError, JsonlReader, JsonlWriter, read_jsonl, write_jsonl
from swirl.schema import Action, Example, Judgment, Step, SupportingFact, Trajectory


def make_trajectory(index: int) -> Trajectory:
    step = Step(
        text="Look it up. <search_query>Ada</search_query>",
        token_ids=[5, 6, 7],
        action=Action("search", "Ada", "Look it up.", 12, 44),
        result="Ada -> Ada Lovelace was a mathematician.",
        retrieved=["Ada Lovelace"],
        observation_text="\nuser\nAda -> ...\nassistant\n",
        observation_token_ids=[8, 9],
        process=Judgment(judge="reference", verdict=True),
    )
    return Trajectory(
        id=f"t{index}",
        example_id=f"e{index}",
        prompt_text="Question: who?",
        prompt_token_ids=[1, 2, 3, 4],
        steps=[step],
        final_answer=None,
        termination="step_cap",
    )


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    records = [make_trajectory(i) for i in range(3)]
    assert write_jsonl(path, records) == 3
    assert read_jsonl(path, Trajectory) == records


def test_example_round_trip(tmp_path: Path) -> None:
    example = Example(
        id="q1",
        question="Who?",
        answers=["Ada"],
        dataset="demo-qa",
        supporting_facts=[SupportingFact("Ada Lovelace", 0)],
    )
    write_jsonl(tmp_path / "e.jsonl", [example])
    assert read_jsonl(tmp_path / "e.jsonl", Example) == [example]


def test_corrupt_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    write_jsonl(path, [make_trajectory(0)])
    with path.open("a") as handle:
        handle.write("\n")  # blank lines are ignored
        handle.write('{"id": "x"}\n')  # valid JSON, missing required fields
        handle.write("{not json\n")
    with pytest.raises(JsonlError, match=r"bad\.jsonl:3: .*required") as error:
        read_jsonl(path, Trajectory)
    assert error.value.line == 3
    reader = JsonlReader(path, Trajectory, skip_bad=True)
    assert len(list(reader)) == 1
    assert (reader.skipped, reader.bad_lines) == (2, [3, 4])


def test_wrong_field_type_is_named(tmp_path: Path) -> None:
    path = tmp_path / "typed.jsonl"
    path.write_text('{"id": "q", "question": 3, "answers": [], "dataset": "d"}\n')
    with pytest.raises(JsonlError, match=r"typed\.jsonl:1: .*question"):
        read_jsonl(path, Example)


def test_writer_appends_and_drops_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    with JsonlWriter(path) as writer:
        writer.write(make_trajectory(0))
    # A crash mid-write leaves half a record without its newline.
    with path.open("ab") as handle:
        handle.write(b'{"id": "t1", "exam')
    with JsonlWriter(path) as writer:
        assert writer.dropped_bytes == len(b'{"id": "t1", "exam')
        writer.write(make_trajectory(1))
    assert [t.id for t in read_jsonl(path, Trajectory)] == ["t0", "t1"]


def test_torn_only_line(tmp_path: Path) -> None:
    path = tmp_path / "torn.jsonl"
    path.write_bytes(b"x" * 70_000)  # longer than one read block, no newline at all
    with JsonlWriter(path) as writer:
        assert writer.dropped_bytes == 70_000
    assert path.read_bytes() == b""


def test_records_are_on_disk_before_close(tmp_path: Path) -> None:
    path = tmp_path / "live.jsonl"
    writer = JsonlWriter(path)
    writer.write(make_trajectory(0))
    assert read_jsonl(path, Trajectory)[0].id == "t0"  # flushed per record
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.write(make_trajectory(1))
