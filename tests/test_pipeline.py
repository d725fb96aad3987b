"""`swirl run` end to end on the embedded model (small sizes), its resume, and its config errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from swirl.cli import main
from swirl.pipeline import Pipeline, RunConfig, load_run_config

SMALL = """
data = "demo-qa"
eval_limit = 3
rounds = 1
train_limit = 4
samples_per_question = 2
filter = "none"

[rollout]
max_new_tokens = 48

[tools]
top_k = 2

[train]
steps = 2
states_per_step = 2
samples_per_state = 2
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
    # Stage-1 settings travel with the data, and online training samples with them.
    for name in ("trajectories", "labelled", "filtered"):
        recorded = json.loads((out / "round-1" / f"{name}.settings.json").read_text())
        assert recorded["rollout"]["max_new_tokens"] == 48 and recorded["tools"]["top_k"] == 2
    assert recorded["judge"]["judge"] is None  # the run's (default) judge settings
    trained_with = json.loads((out / "round-1" / "train" / "train_config.json").read_text())
    assert trained_with["max_new_tokens"] == 48 and trained_with["tools"]["top_k"] == 2
    assert trained_with["data"] == "demo-qa"
    trained = out / "round-1" / "train" / "checkpoints" / "step-000002" / "model"
    assert json.loads((out / "round-1" / "eval" / "summary.json").read_text())["settings"][
        "model"
    ] == str(trained)
    capsys.readouterr()

    # A rerun finds every stage done and only rewrites the report.
    assert main(["run", "--config", str(config), "--out", str(out)]) == 0
    assert capsys.readouterr().out.count("done already") == 6
    assert json.loads((out / "stages.json").read_text()) == stages

    # A finished run needs no checkpoint: deleted (to free the disk), the rerun still reports.
    shutil.rmtree(out / "round-1" / "train" / "checkpoints")
    assert main(["run", "--config", str(config), "--out", str(out)]) == 0
    assert capsys.readouterr().out.count("done already") == 6
    assert (out / "report.md").read_text() == report


def test_config_file_and_errors(tmp_path: Path) -> None:
    config = tmp_path / "small.toml"
    config.write_text(SMALL)
    loaded = load_run_config(config, seed=3)
    assert (loaded.eval_limit, loaded.filter, loaded.seed) == (3, "none", 3)
    assert loaded.train.steps == 2 and loaded.train.lr == RunConfig().train.lr
    assert loaded.rollout.max_new_tokens == 48 and loaded.tools.top_k == 2
    bad = tmp_path / "bad.toml"
    bad.write_text('eval_limit = "many"\n')
    with pytest.raises(ValueError, match=r"bad\.toml: invalid run config: .*eval_limit"):
        load_run_config(bad)
    with pytest.raises(ValueError, match="rounds"):
        RunConfig(rounds=0)
    Pipeline(RunConfig(), tmp_path / "run", log=lambda _: None)
    with pytest.raises(ValueError, match="another configuration"):
        Pipeline(RunConfig(eval_limit=5), tmp_path / "run", log=lambda _: None)


def test_a_misspelled_key_in_any_table_fails_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for table, line in (
        ("train", "stpes = 2"),
        ("rollout", "few_shots = 1"),
        ("judge", "jugde = 1"),
    ):
        config = tmp_path / f"{table}.toml"
        config.write_text(f"[{table}]\n{line}\n")
        out = tmp_path / table
        assert main(["run", "--config", str(config), "--out", str(out)]) == 2
        error = capsys.readouterr().err
        assert f"unknown field `{line.split()[0]}`" in error and f"$.{table}" in error
        assert not out.exists()  # nothing ran


def test_validation_questions_come_from_the_dataset_s_own_validation_split(tmp_path: Path) -> None:
    """demo-hops has one (held-out entities); demo-qa has none, so its validation questions are
    the train split's after the training ones, as before."""
    from swirl.data import load_examples

    hops = Pipeline(
        RunConfig(data="demo-hops", eval_split="validation", validation_limit=5), tmp_path / "h"
    )
    assert hops.eval_data_split == "validation"
    assert hops.eval_examples() == load_examples("demo-hops", split="validation", limit=5)
    qa = Pipeline(
        RunConfig(data="demo-qa", eval_split="validation", train_limit=4, validation_limit=3),
        tmp_path / "q",
    )
    assert qa.eval_data_split == "train"
    assert qa.eval_examples() == load_examples("demo-qa", split="train", limit=7)[4:]
