"""The training lines of a run report: reward trend for RL rounds, none for SFT."""

from __future__ import annotations

import json
from pathlib import Path

from swirl.report import training_lines


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
