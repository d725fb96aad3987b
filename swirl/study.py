"""``swirl study``: a controlled comparison of training arms on one dataset, seeds x arms.

Per seed, Stage 1 runs once (``seed-S/stage1/``: the base model's trajectories on the training
questions, judged), and every arm starts from exactly that data:

- ``base``: the base model, untrained;
- ``sft``: likelihood of the filtered trajectories' actions;
- ``offline``: recorded actions with their process labels as rewards (labelled, unfiltered data
  unless the arm names a filter: a process-filtered file holds only GOOD steps);
- ``online``: SWiRL, G actions sampled per state and judged step by step (``rounds`` > 1
  iterates: generate with the trained model, judge, filter, train again);
- ``outcome``: outcome-level RL, G whole rollouts per question, one reward per trajectory.

All trained arms take the run's ``train`` table (the same optimizer steps), then their own
overrides, and train on the same Stage-1 questions. Every arm is evaluated on the same held-out
questions (``run.eval_split``: the test split to report, or the validation split carved from the
training questions to tune on) and, with ``transfer``, on a second dataset. Every cell is a set
of resumable stages (``seed-S/ARM/stages.json``): kill the study, rerun it, and it continues.
:mod:`swirl.study_report` then writes ``study.md``, ``study.json`` and plots.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Literal

import msgspec

from swirl.config_files import load_struct, pin_config
from swirl.filtering import Strategy
from swirl.pipeline import Model, Pipeline, RunConfig, run_config_values

ArmMode = Literal["base", "sft", "offline", "online", "outcome"]


class ArmConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One arm: how its model is made from the seed's Stage-1 data."""

    name: str
    mode: ArmMode
    filter: Strategy | None = None  # None: the run's filter (sft, online); unfiltered (offline)
    rounds: int = 1  # online only: SWiRL rounds
    train: dict[str, Any] = {}  # TrainConfig fields over the run's [train] table


DEFAULT_ARMS = [
    ArmConfig(name="base", mode="base"),
    ArmConfig(name="sft", mode="sft"),
    ArmConfig(name="offline", mode="offline"),
    ArmConfig(name="swirl", mode="online"),
    ArmConfig(name="outcome", mode="outcome"),
]


class StudyConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A grid of ``arms`` x ``seeds`` over the settings of ``run`` (a ``swirl run`` config)."""

    run: RunConfig = msgspec.field(default_factory=RunConfig)
    seeds: list[int] = msgspec.field(default_factory=lambda: [0])
    arms: list[ArmConfig] = msgspec.field(default_factory=lambda: list(DEFAULT_ARMS))
    reference: str = "swirl"  # the arm every other is also compared with
    transfer: str | None = None  # a second dataset every arm is evaluated on (e.g. demo-math)
    transfer_limit: int = 50

    def __post_init__(self) -> None:
        names = [arm.name for arm in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be unique, got {names}")
        if not self.seeds:
            raise ValueError("seeds must name at least one seed")
        for arm in self.arms:
            if arm.rounds < 1 or (arm.rounds > 1 and arm.mode != "online"):
                raise ValueError(f"arm {arm.name!r}: rounds > 1 is for online arms, >= 1")
            arm_run(self.run, arm, seed=self.seeds[0])  # a bad train override fails now


def arm_run(run: RunConfig, arm: ArmConfig, *, seed: int) -> RunConfig:
    """The run config of one arm at one seed: its filter, rounds and train overrides; the
    questions are the same for every seed (``data_seed``), sampling and training use ``seed``."""
    values = msgspec.to_builtins(run)
    values.update(seed=seed, data_seed=run.data_seed if run.data_seed is not None else 0)
    values.update(rounds=arm.rounds)
    if arm.filter is not None:
        values["filter"] = arm.filter
    values["train"] = {**values["train"], **arm.train}
    try:
        return msgspec.convert(values, RunConfig)
    except (msgspec.ValidationError, ValueError) as error:
        raise ValueError(f"arm {arm.name!r}: {error}") from None


def load_study_config(path: str | Path | None, **overrides: Any) -> StudyConfig:
    """A StudyConfig from TOML: top-level keys (seeds, reference, transfer), a ``[run]`` table
    with its own ``[run.rollout]``, ``[run.tools]``, ``[run.judge]`` and ``[run.train]`` (each
    over the run defaults), and ``[[arms]]``. Errors name the file and the field."""

    def select(toml: dict[str, Any]) -> dict[str, Any]:
        values = dict(toml)
        values["run"] = run_config_values(values.pop("run", {}))
        return values

    return load_struct(path, StudyConfig, overrides=overrides, select=select, what="study config")


class Study:
    """Runs (or resumes) every cell of a :class:`StudyConfig` under ``out``."""

    def __init__(self, config: StudyConfig, out: str | Path, *, log=print) -> None:
        self.config = config
        self.out = Path(out)
        self.log = log
        self.out.mkdir(parents=True, exist_ok=True)
        pin_config(self.out / "study_config.json", config, "study")

    def stage1(self, seed: int) -> Pipeline:
        """The seed's Stage-1 data, shared by every arm: trajectories and their labels."""
        base = ArmConfig(name="stage1", mode="base")
        pipeline = Pipeline(
            arm_run(self.config.run, base, seed=seed),
            self.out / f"seed-{seed}" / "stage1",
            log=self.log,
        )
        root = pipeline.out
        pipeline.stages.run(
            "generate", pipeline.generate, pipeline.config.model, root / "trajectories.jsonl"
        )
        pipeline.stages.run(
            "judge", pipeline.judge, root / "trajectories.jsonl", root / "labelled.jsonl"
        )
        return pipeline

    def cell(self, seed: int, arm: ArmConfig) -> Path:
        """Train (unless base) and evaluate one arm at one seed; returns its eval directory."""
        stage1 = self.stage1(seed).out
        pipeline = Pipeline(
            arm_run(self.config.run, arm, seed=seed),
            self.out / f"seed-{seed}" / arm.name,
            log=self.log,
        )
        root, stages = pipeline.out, pipeline.stages
        evaluation = root / (f"round-{arm.rounds}/eval" if arm.mode == "online" else "eval")
        model: Model = pipeline.config.model
        if arm.mode == "online":
            # The arm's first round reuses the seed's Stage-1 files (generation and judging then
            # find nothing left to do), so every arm starts from the same data.
            first = root / "round-1"
            first.mkdir(exist_ok=True)
            for name in ("trajectories", "labelled"):
                for suffix in (".jsonl", ".settings.json"):
                    target = first / f"{name}{suffix}"
                    if not target.exists():
                        shutil.copyfile(stage1 / f"{name}{suffix}", target)
            model = pipeline.iterate()
        else:
            if arm.mode != "base":
                data = self._training_data(pipeline, arm, stage1)
                mode = arm.mode
                stages.run("train", pipeline.train, data, model, root / "train", mode=mode)
                model = pipeline.trained_model(root)
            stages.run("eval", pipeline.evaluate, model, evaluation)
        if self.config.transfer is not None:
            transfer = self._transfer_pipeline(seed, arm)
            stages.run("transfer", transfer.evaluate, model, transfer.out / "eval")
        return evaluation

    def _training_data(self, pipeline: Pipeline, arm: ArmConfig, stage1: Path) -> Path:
        """What the arm trains on: filtered (sft), labelled or filtered (offline), or the Stage-1
        trajectories (outcome: only their questions)."""
        if arm.mode == "outcome":
            return stage1 / "trajectories.jsonl"
        if arm.mode == "offline" and arm.filter is None:
            return stage1 / "labelled.jsonl"
        filtered = pipeline.out / "filtered.jsonl"
        pipeline.stages.run("filter", pipeline.filter, stage1 / "labelled.jsonl", filtered)
        return filtered

    def _transfer_pipeline(self, seed: int, arm: ArmConfig) -> Pipeline:
        run = arm_run(self.config.run, arm, seed=seed)
        values = msgspec.to_builtins(run)
        values.update(data=self.config.transfer, eval_limit=self.config.transfer_limit)
        values.update(eval_split="test")
        return Pipeline(
            msgspec.convert(values, RunConfig),
            self.out / f"seed-{seed}" / arm.name / "transfer",
            log=self.log,
        )

    def run(self) -> Path:
        """Every cell (seeds in order, arms in order), then the report; returns ``study.md``."""
        from swirl.study_report import write_study_report

        for seed in self.config.seeds:
            for arm in self.config.arms:
                self.log(f"[seed {seed}] arm {arm.name} ({arm.mode})")
                self.cell(seed, arm)
        return write_study_report(self.out, self.config)
