"""``swirl judge`` and ``swirl filter`` from the command line: resuming, summaries, bad input."""

from __future__ import annotations

import pytest
from trajectory_builders import MATH_EXAMPLE, QA_EXAMPLE, step, trajectory

from swirl.cli import main
from swirl.jsonl import read_jsonl, write_jsonl
from swirl.judge.loading import JudgeSpec, parse_judge_spec
from swirl.schema import Trajectory


@pytest.fixture
def files(tmp_path):
    data = tmp_path / "examples.jsonl"
    write_jsonl(data, [QA_EXAMPLE, MATH_EXAMPLE])
    trajectories = [
        trajectory(MATH_EXAMPLE, [step("<math_exp>48/2</math_exp>", "24"), step("<answer>72</answer>")], id="good"),
        trajectory(MATH_EXAMPLE, [step("<math_exp>48*2</math_exp>", "96"), step("<answer>72</answer>")], id="lucky"),
        trajectory(QA_EXAMPLE, [step("<answer>Wings</answer>")], id="wrong"),
        trajectory(QA_EXAMPLE, [step("<search_query>Ringo</search_query>", "...", ["Ringo Starr"])], id="cut"),
    ]  # fmt: skip
    source = tmp_path / "traj.jsonl"
    write_jsonl(source, trajectories)
    return tmp_path, data, source


def judge_argv(source, out, data, *extra) -> list[str]:
    return ["judge", "--in", str(source), "--out", str(out), "--data", str(data), *extra]


def test_reference_judge_cli_and_resume_after_a_torn_write(files, capsys) -> None:
    tmp_path, data, source = files
    out = tmp_path / "labelled.jsonl"
    assert main(judge_argv(source, out, data, "--judge", "reference", "--batch-size", "2")) == 0
    complete = out.read_bytes()
    labelled = read_jsonl(out, Trajectory)
    assert [[s.process.verdict for s in t.steps] for t in labelled] == [
        [True, True],
        [False, True],
        [False],
        [True],
    ]
    assert [t.outcome.verdict for t in labelled] == [True, True, False, False]
    assert "4 GOOD, 2 BAD, 0 unknown" in capsys.readouterr().out

    # A killed run: two records and half of the third on disk. The rerun completes it exactly.
    lines = complete.splitlines(keepends=True)
    out.write_bytes(lines[0] + lines[1] + lines[2][:40])
    assert main(judge_argv(source, out, data, "--judge", "reference")) == 0
    assert out.read_bytes() == complete
    assert "(2 already labelled, skipped)" in capsys.readouterr().out


def test_process_only_then_filters(files, capsys) -> None:
    tmp_path, data, source = files
    out = tmp_path / "process.jsonl"
    assert main(judge_argv(source, out, data, "--mode", "process")) == 0
    assert all(t.outcome is None for t in read_jsonl(out, Trajectory))
    capsys.readouterr()
    filtered = tmp_path / "f.jsonl"
    assert main(["filter", "--in", str(out), "--out", str(filtered), "--strategy", "process"]) == 0
    assert [t.id for t in read_jsonl(filtered, Trajectory)] == ["good", "cut"]
    captured = capsys.readouterr()
    assert "kept 2 of 4 trajectories (3 steps)" in captured.out
    assert "labels missing" in captured.err  # outcome strategies cannot run on these labels
    assert main(["filter", "--in", str(out), "--out", str(filtered), "--strategy", "outcome"]) == 2
    assert "no outcome label (judge with --mode outcome or both)" in capsys.readouterr().err


def test_filter_fixed_size(files, capsys) -> None:
    tmp_path, data, source = files
    out = tmp_path / "labelled.jsonl"
    assert main(judge_argv(source, out, data)) == 0
    filtered = tmp_path / "f.jsonl"
    argv = ["filter", "--in", str(out), "--out", str(filtered)]
    assert main([*argv, "--strategy", "none", "--size", "2", "--seed", "3"]) == 0
    first = filtered.read_bytes()
    assert len(read_jsonl(filtered, Trajectory)) == 2
    assert main([*argv, "--strategy", "none", "--size", "2", "--seed", "3"]) == 0
    assert filtered.read_bytes() == first
    capsys.readouterr()
    assert main([*argv, "--strategy", "process+outcome", "--size", "2"]) == 2
    assert "cannot sample 2 trajectories from the 1 kept; lower --size" in capsys.readouterr().err


def test_judge_spec_parsing(monkeypatch) -> None:
    assert parse_judge_spec("reference") == JudgeSpec("reference")
    assert parse_judge_spec("hf:") == JudgeSpec("hf", "")
    assert parse_judge_spec("hf:").name == "hf:smollm2-135m"
    assert parse_judge_spec("hf:/models/judge").name == "hf:/models/judge"
    spec = parse_judge_spec("openai:http://127.0.0.1:8000/v1#Qwen/Qwen2.5-72B")
    assert (spec.target, spec.model) == ("http://127.0.0.1:8000/v1", "Qwen/Qwen2.5-72B")
    assert spec.name == "openai:http://127.0.0.1:8000/v1#Qwen/Qwen2.5-72B"
    for bad in ("gpt-4", "openai:localhost:8000", "local:x"):
        with pytest.raises(ValueError, match="--judge"):
            parse_judge_spec(bad)


def test_bad_judge_and_missing_file_are_named(files, capsys, monkeypatch) -> None:
    tmp_path, data, source = files
    out = tmp_path / "o.jsonl"
    assert main(judge_argv(source, out, data, "--judge", "gpt-4")) == 2
    assert "--judge 'gpt-4'" in capsys.readouterr().err
    monkeypatch.setenv("SWIRL_JUDGE", "nonsense")
    assert main(judge_argv(source, out, data)) == 2  # the environment default is parsed too
    assert main(judge_argv(tmp_path / "missing.jsonl", out, data, "--judge", "reference")) == 2
    assert "missing.jsonl" in capsys.readouterr().err
