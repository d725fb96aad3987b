"""`swirl study`: the report's paired statistics on a constructed case, the config's checks, and
a tiny real study on the embedded model that resumes."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
from trajectory_builders import record

from swirl.cli import main
from swirl.evaluate import EvalRecord, aggregate, write_report
from swirl.jsonl import write_jsonl
from swirl.study import ArmConfig, Study, StudyConfig, cell_eval_dir, load_study_config
from swirl.study_report import write_study_report


def scored(question: int, correct: bool, process: float, stratum: str = "all") -> EvalRecord:
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
        stratum=stratum,
    )


PRINTS = {"questions": "q" * 64, "corpus": "c" * 64}


def write_cell(folder: Path, records: list[EvalRecord], prints: dict[str, str] = PRINTS) -> None:
    """An evaluated cell: its records and its summary (with the data's fingerprints)."""
    write_jsonl(folder / "records.jsonl", records)
    report = aggregate(records)
    report.fingerprints = prints
    write_report(report, folder)


def test_report_statistics_across_seeds_on_a_constructed_case(tmp_path: Path) -> None:
    """10 questions, 3 seeds. Base (deterministic) is one run, right on q0 only. SWiRL at seed s
    is right on q0..q(4+s): per-seed differences 0.4, 0.5, 0.6, so the t-test over seeds is
    SciPy's on them (df 2), the sign-flip test's p is its floor 2/8, and the per-seed McNemar at
    seed 0 is 2 * 0.5**4. SFT equals base at every seed: differences 0, no spread, no p. The two
    primary comparisons are Holm-adjusted together; per stratum (q < 5: "a", else "b")."""
    stats = pytest.importorskip("scipy.stats")
    config = StudyConfig(
        arms=[
            ArmConfig(name="base", mode="base"),
            ArmConfig(name="sft", mode="sft"),
            ArmConfig(name="swirl", mode="online"),
        ],
        seeds=[0, 1, 2],
        primary=["swirl - base", "sft - base"],
    )

    def stratum(q: int) -> str:
        return "a" if q < 5 else "b"

    base = [scored(q, q == 0, 0.2 + 0.05 * q, stratum(q)) for q in range(10)]
    write_cell(tmp_path / "seed-0" / "base" / "eval", base)  # one run: base is deterministic
    for seed in (0, 1, 2):
        root = tmp_path / f"seed-{seed}"
        swirl = [scored(q, q <= 4 + seed, 0.3 + 0.05 * q, stratum(q)) for q in range(10)]
        write_cell(root / "sft" / "eval", base)
        write_cell(root / "swirl" / "round-1" / "eval", swirl)
    # the trainer logs the fraction of informative groups per step (RL arms only)
    train = tmp_path / "seed-1" / "swirl" / "round-1" / "train"
    train.mkdir(parents=True)
    steps = [{"step": 1, "informative_frac": 0.25}, {"step": 2, "informative_frac": 0.75}]
    (train / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in steps))
    write_study_report(tmp_path, config)
    results = json.loads((tmp_path / "study.json").read_text())
    assert results["costs"]["swirl"]["1"]["informative_frac"] == pytest.approx(0.5)
    assert results["costs"]["sft"]["1"]["informative_frac"] is None
    assert list(results["costs"]["base"]) == ["0"]

    def find(arm: str, against: str, metric: str, stratum: str = "all") -> dict:
        (match,) = [
            c
            for c in results["seed_comparisons"]
            if (c["arm"], c["against"], c["metric"], c["stratum"])
            == (arm, against, metric, stratum)
        ]
        return match

    primary = find("swirl", "base", "exact_match")
    test = primary["test"]
    assert primary["primary"] and test["per_seed"] == pytest.approx([0.4, 0.5, 0.6])
    expected = stats.ttest_1samp([0.4, 0.5, 0.6], 0.0)
    assert test["p_value"] == pytest.approx(expected.pvalue) and test["df"] == 2
    interval = expected.confidence_interval(0.95)
    assert (test["low"], test["high"]) == pytest.approx((interval.low, interval.high))
    assert test["sign_flip_p"] == pytest.approx(2 / 8)
    same = find("sft", "base", "exact_match")
    assert same["primary"] and same["test"]["difference"] == 0 and same["test"]["p_value"] is None
    # Holm over the family: the undefined p counts as 1
    assert primary["holm_p"] == pytest.approx(min(1.0, 2 * expected.pvalue))
    assert same["holm_p"] == 1.0
    assert not find("swirl", "base", "f1")["primary"]  # another metric: exploratory
    # per stratum: on "a" swirl gains 4 of 5 at every seed, on "b" 0, 1, 2 of 5
    assert find("swirl", "base", "exact_match", "a")["test"]["per_seed"] == pytest.approx([0.8] * 3)
    assert find("swirl", "base", "exact_match", "b")["test"]["per_seed"] == pytest.approx(
        [0, 0.2, 0.4]
    )
    # secondary: per-seed McNemar, never pooled
    (mcnemar,) = [
        c
        for c in results["per_seed"]
        if (c["arm"], c["against"], c["metric"], c["seed"]) == ("swirl", "base", "exact_match", 0)
    ]
    assert mcnemar["test"]["p_value"] == pytest.approx(2 * 0.5**4)
    assert {c["seed"] for c in results["per_seed"]} == {0, 1, 2}
    # base counted once: one report, its own interval; swirl: the mean of its seeds
    assert list(results["metrics"]["base"]) == ["0"]
    assert results["across_seeds"]["swirl"]["exact_match"]["mean"] == pytest.approx(0.6)
    assert results["across_seeds"]["swirl"]["exact_match"]["method"] == "t over seeds"
    assert results["strata"]["swirl"]["b"]["mean"] == pytest.approx(0.2)
    assert results["fingerprints"] == PRINTS
    text = (tmp_path / "study.md").read_text()
    assert "| swirl - base | +0.400, +0.500, +0.600 | +0.500 [" in text
    assert "| base | one run (seed 0, deterministic) | 10 |" in text
    assert "**3 seeds is fewer than 5:**" in text and "| pooled |" not in text
    assert "| 0.50 |" in text and "| n/a |" in text  # informative groups per arm
    assert "| *options: random* |" not in text  # no baselines recorded in these summaries
    for png in ("study_metrics.png", "study_differences.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"


def test_report_refuses_arms_evaluated_on_different_questions(tmp_path: Path) -> None:
    config = StudyConfig(
        arms=[ArmConfig(name="base", mode="base"), ArmConfig(name="sft", mode="sft")]
    )
    write_cell(tmp_path / "seed-0" / "base" / "eval", [scored(0, True, 1.0)])
    write_cell(tmp_path / "seed-0" / "sft" / "eval", [scored(1, True, 1.0)])
    with pytest.raises(ValueError, match="different questions"):
        write_study_report(tmp_path, config)


def test_report_refuses_cells_evaluated_on_different_data(tmp_path: Path) -> None:
    config = StudyConfig(
        arms=[ArmConfig(name="base", mode="base"), ArmConfig(name="sft", mode="sft")],
        seeds=[0, 1],
    )
    records = [scored(0, True, 1.0)]
    write_cell(tmp_path / "seed-0" / "base" / "eval", records)
    write_cell(tmp_path / "seed-0" / "sft" / "eval", records)
    write_cell(tmp_path / "seed-1" / "sft" / "eval", records, {**PRINTS, "corpus": "d" * 64})
    with pytest.raises(
        ValueError, match=r"cells seed-0/base and seed-1/sft .*\(corpus: c+ vs d+\)"
    ):
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

    arms = '[[arms]]\nname = "base"\nmode = "base"\n[[arms]]\nname = "swirl"\nmode = "online"\n'
    for primary, problem in (
        ('["swirl - sft"]', "no arm 'sft'"),
        ('["swirl-base"]', "expected 'ARM - OTHER'"),
        ('["swirl - swirl"]', "against itself"),
    ):
        path.write_text(f"primary = {primary}\n{arms}")
        with pytest.raises(ValueError, match=problem):
            load_study_config(path)
    path.write_text(f'primary_metric = "accuracy"\n{arms}')
    with pytest.raises(ValueError, match="primary_metric 'accuracy'"):
        load_study_config(path)
    for tuning, problem in (
        ("seeds = [0]\nlr = [1e-6, -1.0]", r"arm 'swirl'.*lr"),
        ("seeds = [0]\nlearning_rate = [1e-6]", r"arm 'swirl'.*learning_rate"),
        ("seeds = [0]\nlr = []", "at least one TrainConfig field"),
        ('seeds = [0]\nlr = [1e-6]\narms = ["base"]', "'base' is not trained"),
        ('seeds = [0]\nlr = [1e-6]\nmetric = "speed"', "metric 'speed'"),
    ):
        path.write_text(f"{arms}\n[tuning]\n{tuning}\n")
        with pytest.raises(ValueError, match=problem):
            load_study_config(path)
    path.write_text(
        arms.replace('"online"\n', '"online"\ntrain = {lr = 1e-6}\n')
        + "[tuning]\nseeds = [0]\nlr = [1e-6]\n"
    )
    with pytest.raises(ValueError, match="arm 'swirl' sets lr itself"):
        load_study_config(path)


def test_tuning_then_test_cells_on_a_constructed_study(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The study's flow, with each cell's evaluation faked (its exact match depends on the
    arm's learning rate): every tuned arm runs the whole grid at every tuning seed on the
    validation split, base once; each arm takes its best point; the test cells train with it,
    and base runs at the first seed only."""
    path = tmp_path / "study.toml"
    path.write_text(
        """
seeds = [0, 1]
primary = ["swirl - base"]
[[arms]]
name = "base"
mode = "base"
[[arms]]
name = "sft"
mode = "sft"
[[arms]]
name = "swirl"
mode = "online"
[tuning]
seeds = [3, 4]
lr = [1e-6, 2e-6, 4e-6]
kl_coef = [0.0, 0.05]
"""
    )
    config = load_study_config(path)
    best = {"sft": 1e-6, "swirl": 4e-6}  # the lr at which the fake arm scores highest
    calls = []

    def fake_cell(self, seed, arm, *, run=None, root=None, transfer=True):
        split = (run or self.config.run).eval_split
        calls.append((split, arm.name, seed, dict(arm.train)))
        right = 1 if arm.mode == "base" else 2 + 4 * (arm.train.get("lr") == best[arm.name])
        right += arm.train.get("kl_coef", 0) > 0  # kl_coef 0.05 is better still
        folder = cell_eval_dir(root or self.out / f"seed-{seed}" / arm.name, arm)
        write_cell(folder, [scored(q, q < right, 0.5) for q in range(10)])
        return folder

    monkeypatch.setattr(Study, "cell", fake_cell)
    Study(config, tmp_path / "out").run()
    tuning = [c for c in calls if c[0] == "validation"]
    for arm in ("sft", "swirl"):
        runs = [c for c in tuning if c[1] == arm]
        assert len(runs) == 3 * 2 * 2  # the whole grid at both tuning seeds: same for each arm
        assert {c[2] for c in runs} == {3, 4}
    assert [c[1:3] for c in tuning if c[1] == "base"] == [("base", 3)]
    chosen = json.loads((tmp_path / "out" / "tuning.json").read_text())
    assert {a["arm"]: a["chosen"] for a in chosen["arms"]} == {
        "sft": {"lr": 1e-6, "kl_coef": 0.05},
        "swirl": {"lr": 4e-6, "kl_coef": 0.05},
    }
    test = [c for c in calls if c[0] == "test"]
    assert [(c[1], c[2]) for c in test] == [
        ("base", 0),
        ("sft", 0),
        ("swirl", 0),
        ("sft", 1),
        ("swirl", 1),
    ]
    assert all(c[3] == {"lr": best[c[1]], "kl_coef": 0.05} for c in test if c[1] != "base")
    report = (tmp_path / "out" / "study.md").read_text()
    assert "## Tuning (validation split)" in report and "| swirl | 12 |" in report
    assert "**0.700**" in (tmp_path / "out" / "tuning.md").read_text()


TINY = """
seeds = [0]
keep_checkpoints = false

[run]
data = "demo-qa"
eval_limit = 2
train_limit = 2
samples_per_question = 1
filter = "none"

[run.judge]
judge = "grounded"

[run.rollout]
max_steps = 2
max_new_tokens = 16

[run.train]
steps = 1
states_per_step = 1
samples_per_state = 2
kl_coef = 0.01  # a loss term every step, so every arm trains some tokens

[[arms]]
name = "base"
mode = "base"

[[arms]]
name = "swirl"
mode = "online"

[[arms]]
name = "outcome"
mode = "outcome"

[[arms]]
name = "swirl-reference"
mode = "online"
judge = "reference"

[[arms]]
name = "traj-process"
mode = "trajectory-process"
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
    trained = ("swirl", "outcome", "swirl-reference", "traj-process")
    assert results["arms"] == ["base", *trained]
    assert {c["arm"] for c in results["seed_comparisons"]} == set(trained)
    assert {c["arm"] for c in results["per_seed"]} == set(trained)
    for arm in trained:
        assert results["metrics"][arm]["0"]["questions"] == 2
        assert results["costs"][arm]["0"]["train_tokens"] > 0
    for arm in ("outcome", "traj-process"):
        assert results["costs"][arm]["0"]["sampled_tokens"] > 0
    # the arm with its own judge relabelled the shared trajectories with it
    from swirl.jsonl import read_jsonl
    from swirl.schema import Trajectory

    def judges(path: Path) -> set[str]:
        return {s.process.judge for t in read_jsonl(path, Trajectory) for s in t.steps if s.process}

    assert judges(out / "seed-0" / "stage1" / "labelled.jsonl") == {"grounded"}
    assert judges(out / "seed-0" / "swirl-reference" / "round-1" / "labelled.jsonl") == {
        "reference"
    }
    assert set(results["fingerprints"]) == {"questions", "corpus"}  # every cell's, the same
    assert "majority per kind" in {b["name"] for b in results["baselines"]}
    # every arm trained on the same Stage-1 questions and was evaluated on the same ones
    stage1 = out / "seed-0" / "stage1" / "trajectories.jsonl"
    swirl_round = out / "seed-0" / "swirl" / "round-1" / "trajectories.jsonl"
    assert swirl_round.read_bytes() == stage1.read_bytes()
    capsys.readouterr()

    # Finished cells keep their logs and evaluations, not their models (keep_checkpoints = false)
    assert not list(out.rglob("checkpoints"))
    assert (out / "seed-0" / "outcome" / "train" / "metrics.jsonl").exists()

    # Kill a cell's evaluation (as a crash would leave it): a rerun redoes only that stage, and
    # every finished cell is skipped without its model.
    stages_file = out / "seed-0" / "base" / "stages.json"
    stages = json.loads(stages_file.read_text())
    del stages["eval"]
    stages_file.write_text(json.dumps(stages))
    assert main(["study", "--config", str(config), "--out", str(out)]) == 0
    log = capsys.readouterr().out
    assert log.count("] ...") == 1 and "[eval] ..." in log and log.count("done already") >= 7
    assert json.loads((out / "study.json").read_text())["metrics"] == results["metrics"]
    with pytest.raises(ValueError, match="another configuration"):
        from swirl.study import Study

        Study(msgspec.structs.replace(load_study_config(config), seeds=[1]), out)
