"""The run report: reward trend for RL rounds (none for SFT), and the evaluations' strata and
data fingerprints."""

from __future__ import annotations

import json
from pathlib import Path

from trajectory_builders import record

from swirl.evaluate import aggregate, write_report
from swirl.report import training_lines, write_run_report


def write_metrics(folder: Path, rewards: list[float | None]) -> None:
    folder.mkdir(parents=True)
    records = [
        {"step": i + 1, "reward": r, "pack_ratio": 4.0, "tokens_per_s": 100.0}
        for i, r in enumerate(rewards)
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_reward_trend_for_rl_and_none_for_sft(tmp_path: Path) -> None:
    write_metrics(tmp_path / "round-1" / "train", [0.0, 0.5, 0.5, 1.0])
    write_metrics(tmp_path / "sft" / "train", [None, None])
    rl, sft = training_lines(tmp_path)
    assert rl.startswith("- `round-1/train`: 4 steps; mean step reward 0.250 (first half)")
    assert "-> 0.750 (second half); packed 4.00x fewer tokens" in rl
    assert sft.startswith("- `sft/train`: 2 steps; packed 4.00x fewer tokens")
    assert "reward" not in sft


def test_report_shows_strata_and_fingerprints(tmp_path: Path) -> None:
    for folder, right in (("eval-base", False), ("round-1/eval", True)):
        records = [
            record(example_id=f"q{i}", exact_match=right or i == 0, stratum=f"kind {1 + i % 2}-hop")
            for i in range(4)
        ]
        report = aggregate(records)
        report.fingerprints = {"questions": "a" * 64, "corpus": "b" * 64}
        (tmp_path / folder).mkdir(parents=True)
        write_report(report, tmp_path / folder)
    text = write_run_report(tmp_path, {}).read_text()
    assert "| exact match | base model | SWiRL round-1 |" in text
    assert "| kind 1-hop | 0.500 [" in text and "| kind 2-hop | 0.000 [" in text
    assert f"- base model: questions `{'a' * 64}`, corpus `{'b' * 64}`" in text
