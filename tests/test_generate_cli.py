"""``swirl generate`` end to end on the real model: records, resume, Ctrl-C, torn tails."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from swirl.cli import main
from swirl.jsonl import read_jsonl
from swirl.schema import Trajectory

pytestmark = pytest.mark.slow

ARGS = [
    "generate",
    "--data",
    "demo-math",
    "--limit",
    "2",
    "--samples-per-question",
    "2",
    "--max-steps",
    "2",
    "--max-new-tokens",
    "16",
    "--temperature",
    "1.0",
    "--seed",
    "3",
    # One episode at a time: records then match bit for bit between runs (see test_env).
    "--batch-size",
    "1",
]


def by_id(path) -> dict[str, Trajectory]:
    records = read_jsonl(path, Trajectory)
    ids = [t.id for t in records]
    assert len(ids) == len(set(ids)), "duplicate (example, sample) pairs"
    return {t.id: t for t in records}


def test_generate_resume_and_interrupt(tmp_path, capsys):
    full = tmp_path / "full.jsonl"
    assert main([*ARGS, "--out", str(full)]) == 0
    reference = by_id(full)
    assert len(reference) == 4 and {t.sample_index for t in reference.values()} == {0, 1}
    out = capsys.readouterr().out
    assert "termination:" in out and "steps per trajectory:" in out and "tool calls:" in out

    # Rerunning the finished command adds nothing.
    assert main([*ARGS, "--out", str(full)]) == 0
    assert "4 of 4 trajectories already done" in capsys.readouterr().out
    assert by_id(full) == reference

    # A killed run: one finished record and half of the next one. The rerun drops the torn tail
    # and writes exactly what the uninterrupted run wrote.
    lines = full.read_bytes().splitlines(keepends=True)
    killed = tmp_path / "killed.jsonl"
    killed.write_bytes(lines[0] + lines[1][: len(lines[1]) // 2])
    assert main([*ARGS, "--out", str(killed)]) == 0
    assert by_id(killed) == reference

    # Ctrl-C: the process stops with 130 and every line on disk is a whole record.
    interrupted = tmp_path / "interrupted.jsonl"
    command = [
        sys.executable,
        "-m",
        "swirl",
        *ARGS,
        "--limit",
        "3",
        "--out",
        str(interrupted),
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # The reference's thread count: a matmul's last float bits depend on it, and a seeded
        # draw at temperature 1 can flip with them.
        env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())},
        # A shell's background job starts with SIGINT ignored, and a child inherits that: give
        # the child the default disposition, so Python installs its KeyboardInterrupt handler.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 300
    while not (interrupted.exists() and interrupted.read_bytes().count(b"\n") >= 1):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "every finished record is on disk" in stderr
    partial = by_id(interrupted)
    assert 1 <= len(partial) < 6
    for key, trajectory in partial.items():
        if key in reference:
            assert trajectory == reference[key]


@pytest.mark.parametrize(
    "extra,message",
    [
        (
            ["--data", "demo-math", "--samples-per-question", "0"],
            "--samples-per-question must be >= 1",
        ),
        (["--data", "missing.jsonl"], "missing.jsonl"),
        (["--data", "demo-math", "--backend", "openai"], "--backend openai needs --base-url"),
    ],
)
def test_generate_bad_arguments(tmp_path, capsys, extra, message):
    assert main(["generate", "--out", str(tmp_path / "out.jsonl"), *extra]) == 2
    assert message in capsys.readouterr().err
