"""`swirl study`: the report's paired statistics on a constructed case, the config's checks, and
a tiny real study on the embedded model that resumes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import msgspec
import pytest
from trajectory_builders import record

from swirl.cli import main
from swirl.evaluate import EvalRecord
from swirl.jsonl import write_jsonl
from swirl.study import ArmConfig, StudyConfig, load_study_config
from swirl.study_report import write_study_report


def scored(question: int, correct: bool, process: float) -> EvalRecord:
    value = 1.0 if correct else 0.0
    return record(
        example_id=f"q{question}",
        trajectory_id=f"q{question}#0",
        prediction="a" if correct else "b",
        judge_correct=correct,
        exact_match=correct,
        f1=value,
        precision=value,
        recall=value,
        cover_match=correct,
        process_label=process,
    )


def test_report_paired_statistics_on_a_constructed_case(tmp_path: Path) -> None:
    """10 questions, 2 seeds. Base is right on q0 only. SWiRL is right on q0..q6 (6 more, none
    lost): exact McNemar p = 2 * 0.5**6 per seed, 2 * 0.5**12 pooled; its process label is base's
    + 0.1 on every question, so the paired difference is 0.1 with a degenerate interval. SFT
    equals base: difference 0, p = 1."""
    config = StudyConfig(
        arms=[
            ArmConfig(name="base", mode="base"),
            ArmConfig(name="sft", mode="sft"),
            ArmConfig(name="swirl", mode="online"),
        ],
        seeds=[0, 1],
    )
    base = [scored(q, q == 0, 0.2 + 0.05 * q) for q in range(10)]
    swirl = [scored(q, q <= 6, 0.3 + 0.05 * q) for q in range(10)]
    for seed in (0, 1):
        root = tmp_path / f"seed-{seed}"
        write_jsonl(root / "base" / "eval" / "records.jsonl", base)
        write_jsonl(root / "sft" / "eval" / "records.jsonl", base)
        write_jsonl(root / "swirl" / "round-1" / "eval" / "records.jsonl", swirl)
    write_study_report(tmp_path, config)
    results = json.loads((tmp_path / "study.json").read_text())

    def find(arm: str, against: str, metric: str, seed: int | str) -> dict:
        (match,) = [
            c
            for c in results["comparisons"]
            if (c["arm"], c["against"], c["metric"], c["seed"]) == (arm, against, metric, seed)
        ]
        return match["test"]

    for seed, p in ((0, 2 * 0.5**6), (1, 2 * 0.5**6), ("pooled", 2 * 0.5**12)):
        em = find("swirl", "base", "exact_match", seed)
        assert em["p_value"] == pytest.approx(p)
        assert em["difference"] == pytest.approx(0.6)
        assert (em["a_only"], em["b_only"]) == (0, 6 if seed != "pooled" else 12)
        assert em["low"] > 0
        process = find("swirl", "base", "process_label", seed)
        assert process["difference"] == pytest.approx(0.1)
        assert process["low"] == pytest.approx(0.1) and process["high"] == pytest.approx(0.1)
        assert process["p_value"] < 0.001
    same = find("sft", "base", "exact_match", 0)
    assert same["difference"] == 0 and same["p_value"] == 1.0
    # every arm is compared with the reference arm too (SFT - SWiRL is the negative of above)
    assert find("sft", "swirl", "exact_match", 0)["difference"] == pytest.approx(-0.6)
    pooled = results["metrics"]["swirl"]["pooled"]
    assert pooled["questions"] == 20
    assert pooled["metrics"]["exact_match"]["mean"] == pytest.approx(0.7)
    text = (tmp_path / "study.md").read_text()
    assert "| swirl | base | exact match | 0 | +0.600" in text
    for png in ("study_metrics.png", "study_differences.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"


def test_report_refuses_arms_evaluated_on_different_questions(tmp_path: Path) -> None:
    config = StudyConfig(
        arms=[ArmConfig(name="base", mode="base"), ArmConfig(name="sft", mode="sft")]
    )
    write_jsonl(tmp_path / "seed-0" / "base" / "eval" / "records.jsonl", [scored(0, True, 1.0)])
    write_jsonl(tmp_path / "seed-0" / "sft" / "eval" / "records.jsonl", [scored(1, True, 1.0)])
    with pytest.raises(ValueError, match="different questions"):
        write_study_report(tmp_path, config)


def test_config_errors_name_the_arm_and_field(tmp_path: Path) -> None:
    path = tmp_path / "study.toml"
    path.write_text('[[arms]]\nname = "fast"\nmode = "online"\ntrain = {lr = "high"}\n')
    with pytest.raises(ValueError, match=r"arm 'fast'.*lr"):
        load_study_config(path)
    path.write_text("[run.train]\nstpes = 1\n")
    with pytest.raises(ValueError, match=r"unknown field `stpes`"):
        load_study_config(path)
    path.write_text('[[arms]]\nname = "a"\nmode = "sft"\n[[arms]]\nname = "a"\nmode = "base"\n')
    with pytest.raises(ValueError, match="unique"):
        load_study_config(path)
    path.write_text('[[arms]]\nname = "twice"\nmode = "sft"\nrounds = 2\n')
    with pytest.raises(ValueError, match="rounds > 1 is for online arms"):
        load_study_config(path)


TINY = """
seeds = [0]

[run]
data = "demo-qa"
eval_limit = 2
train_limit = 2
samples_per_question = 1
filter = "none"

[run.rollout]
max_steps = 2
max_new_tokens = 16

[run.train]
steps = 1
states_per_step = 1
samples_per_state = 2
kl_coef = 0.0

[[arms]]
name = "base"
mode = "base"

[[arms]]
name = "swirl"
mode = "online"

[[arms]]
name = "outcome"
mode = "outcome"
"""


@pytest.mark.slow
def test_tiny_study_runs_reports_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "study.toml"
    config.write_text(TINY)
    out = tmp_path / "study"
    assert main(["study", "--config", str(config), "--out", str(out), "--threads", "2"]) == 0
    results = json.loads((out / "study.json").read_text())
    assert results["arms"] == ["base", "swirl", "outcome"]
    assert {c["arm"] for c in results["comparisons"]} == {"swirl", "outcome"}
    for arm in ("swirl", "outcome"):
        assert results["metrics"][arm]["pooled"]["questions"] == 2
        assert results["costs"][arm]["0"]["train_tokens"] > 0
    assert results["costs"]["outcome"]["0"]["sampled_tokens"] > 0
    # every arm trained on the same Stage-1 questions and was evaluated on the same ones
    stage1 = out / "seed-0" / "stage1" / "trajectories.jsonl"
    swirl_round = out / "seed-0" / "swirl" / "round-1" / "trajectories.jsonl"
    assert swirl_round.read_bytes() == stage1.read_bytes()
    capsys.readouterr()

    # Kill a cell's evaluation (as a crash would leave it): a rerun redoes only that stage.
    stages_file = out / "seed-0" / "outcome" / "stages.json"
    stages = json.loads(stages_file.read_text())
    del stages["eval"]
    stages_file.write_text(json.dumps(stages))
    assert main(["study", "--config", str(config), "--out", str(out)]) == 0
    log = capsys.readouterr().out
    assert "[eval] ..." in log and log.count("done already") >= 5
    assert json.loads((out / "study.json").read_text())["metrics"] == results["metrics"]

    # Finished cells need no model: with every checkpoint deleted (to free the disk) a rerun
    # still completes and reports the same numbers.
    for checkpoints in out.rglob("checkpoints"):
        shutil.rmtree(checkpoints)
    assert main(["study", "--config", str(config), "--out", str(out)]) == 0
    assert "] ..." not in capsys.readouterr().out  # no stage started again
    assert json.loads((out / "study.json").read_text())["metrics"] == results["metrics"]
    with pytest.raises(ValueError, match="another configuration"):
        from swirl.study import Study

        Study(msgspec.structs.replace(load_study_config(config), seeds=[1]), out)
