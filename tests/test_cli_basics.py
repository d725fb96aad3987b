"""The CLI skeleton: help, validate, decompose, and one-line errors that name the problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from swirl.cli import COMMANDS, main
from swirl.jsonl import read_jsonl, write_jsonl
from swirl.schema import Action, Step, SubTrajectory, Trajectory


def trajectory(index: int, steps: int) -> Trajectory:
    return Trajectory(
        id=f"t{index}",
        example_id=f"e{index}",
        prompt_text="P",
        prompt_token_ids=[1],
        steps=[
            Step(text="s", token_ids=[2 + k], action=Action("math", "1+1", "", 0, 5))
            for k in range(steps)
        ],
        termination="step_cap",
    )


def test_help_lists_every_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "swirl", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name in COMMANDS:
        assert name in out


def test_validate_and_decompose(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "traj.jsonl"
    write_jsonl(source, [trajectory(0, 2), trajectory(1, 3)])
    assert main(["validate", str(source)]) == 0
    assert "2 valid trajectory records" in capsys.readouterr().out

    out = tmp_path / "states.jsonl"
    assert main(["decompose", "--in", str(source), "--out", str(out)]) == 0
    states = read_jsonl(out, SubTrajectory)
    assert [(s.trajectory_id, s.step_index) for s in states] == [
        ("t0", 0),
        ("t0", 1),
        ("t1", 0),
        ("t1", 1),
        ("t1", 2),
    ]
    assert main(["validate", "--type", "subtrajectory", str(out)]) == 0


def test_validate_reports_bad_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "traj.jsonl"
    write_jsonl(source, [trajectory(0, 1)])
    with source.open("a") as handle:
        handle.write('{"id": 1}\n')
    assert main(["validate", str(source)]) == 2
    assert f"{source}:2:" in capsys.readouterr().err
    assert main(["validate", "--keep-going", str(source)]) == 1
    assert "1 valid, 1 bad (lines 2)" in capsys.readouterr().out


def test_missing_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope.jsonl")]) == 2
    assert "nope.jsonl" in capsys.readouterr().err
