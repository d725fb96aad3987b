"""`swirl run` end to end on the embedded model (small sizes), its resume, and its config errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swirl.cli import main
from swirl.pipeline import Pipeline, RunConfig, load_run_config

SMALL = """
data = "demo-qa"
eval_limit = 3
train_limit = 4
samples_per_question = 2
max_new_tokens = 48
filter = "none"

[train]
steps = 2
states_per_step = 2
samples_per_state = 2
max_new_tokens = 24
kl_coef = 0.05
"""


@pytest.mark.slow
def test_run_end_to_end_then_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "small.toml"
    config.write_text(SMALL)
    out = tmp_path / "run"
    assert main(["run", "--config", str(config), "--out", str(out), "--threads", "2"]) == 0
    stages = json.loads((out / "stages.json").read_text())
    assert list(stages) == [
        "eval-base",
        "round-1/generate",
        "round-1/judge",
        "round-1/filter",
        "round-1/train",
        "round-1/eval",
    ]
    report = (out / "report.md").read_text()
    for needle in (
        "| metric | base model | SWiRL round-1 |",
        "mean process label",
        "## Training",
        "## Where the time went",
    ):
        assert needle in report
    for png in ("report_metrics.png", "report_time.png", "round-1/train/training_curves.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    trained = out / "round-1" / "train" / "checkpoints" / "step-000002" / "model"
    assert json.loads((out / "round-1" / "eval" / "summary.json").read_text())["settings"][
        "model"
    ] == str(trained)
    capsys.readouterr()

    # A rerun finds every stage done and only rewrites the report.
    assert main(["run", "--config", str(config), "--out", str(out)]) == 0
    assert capsys.readouterr().out.count("done already") == 6
    assert json.loads((out / "stages.json").read_text()) == stages


def test_config_file_and_errors(tmp_path: Path) -> None:
    config = tmp_path / "small.toml"
    config.write_text(SMALL)
    loaded = load_run_config(config, seed=3)
    assert (loaded.eval_limit, loaded.filter, loaded.seed) == (3, "none", 3)
    assert loaded.train["steps"] == 2 and loaded.train["lr"] == RunConfig().train["lr"]
    bad = tmp_path / "bad.toml"
    bad.write_text('eval_limit = "many"\n')
    with pytest.raises(ValueError, match=r"bad\.toml: invalid run config: .*eval_limit"):
        load_run_config(bad)
    with pytest.raises(ValueError, match="rounds"):
        RunConfig(rounds=0)
    Pipeline(RunConfig(), tmp_path / "run", log=lambda _: None)
    with pytest.raises(ValueError, match="another configuration"):
        Pipeline(RunConfig(eval_limit=5), tmp_path / "run", log=lambda _: None)


def test_online_training_samples_with_the_stage1_turn_budget(tmp_path: Path) -> None:
    pipeline = Pipeline(RunConfig(max_new_tokens=77), tmp_path / "run", log=lambda _: None)
    config = pipeline.train_config(tmp_path / "t.jsonl", None, tmp_path / "train", mode="online")
    assert config.max_new_tokens == 77
    chosen = RunConfig(max_new_tokens=77, train={**RunConfig().train, "max_new_tokens": 20})
    pipeline = Pipeline(chosen, tmp_path / "run2", log=lambda _: None)
    config = pipeline.train_config(tmp_path / "t.jsonl", None, tmp_path / "train", mode="online")
    assert config.max_new_tokens == 20  # a [train] value still wins
