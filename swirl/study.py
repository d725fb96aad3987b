"""``swirl study``: a controlled comparison of training arms on one dataset, seeds x arms.

Per seed, Stage 1 runs once (``seed-S/stage1/``: the base model's trajectories on the training
questions, judged), and every arm starts from exactly that data:

- ``base``: the base model, untrained;
- ``sft``: likelihood of the filtered trajectories' actions;
- ``offline``: recorded actions with their process labels as rewards (labelled, unfiltered data
  unless the arm names a filter: a process-filtered file holds only GOOD steps);
- ``online``: SWiRL, G actions sampled per state and judged step by step (``rounds`` > 1
  iterates: generate with the trained model, judge, filter, train again);
- ``outcome``: outcome-level RL, G whole rollouts per question, one reward per trajectory;
- ``stepwise-outcome`` and ``trajectory-process``: the other two corners of the 2 x 2 that
  separates SWiRL's decomposition (per-step states) from its reward (per-step labels): G
  actions at the filtered states rewarded by the outcome of completing them, and G whole
  rollouts per question rewarded by their mean process label.

An arm may name its own ``judge`` (e.g. ``reference`` in a study judged ``grounded``): the
seed's Stage-1 trajectories are relabelled with it for the arm's filter and it rewards the arm.

All trained arms take the run's ``train`` table (the same optimizer steps), then their own
overrides, and train on the same Stage-1 questions. Every arm is evaluated on the same held-out
questions (``run.eval_split``: the test split to report, or the validation split to tune on)
and, with ``transfer``, on a second dataset. A deterministic arm (``base``: the untrained model,
decoded greedily) is one run, at the first seed, whatever the number of seeds. Every cell is a
set of resumable stages (``seed-S/ARM/stages.json``): kill the study, rerun it, and it continues;
with ``keep_checkpoints = false`` a cell's checkpoints are deleted once it is evaluated, so a
finished study is its data, logs and evaluation records.
:mod:`swirl.study_report` then writes ``study.md``, ``study.json`` and plots.

Declared before anything runs, and checked when the config is loaded:

- ``primary``: the primary comparison(s), ``"ARM - OTHER"`` on ``primary_metric``, tested
  across seeds and Holm-corrected together as one family; every other test of the report is
  exploratory;
- ``[tuning]``: one grid of :class:`~swirl.training.config.TrainConfig` values (e.g. ``lr`` x
  ``kl_coef``) that every tuned arm runs in full (the same number of runs per arm) on the
  validation split at the tuning seeds; each arm takes the values that score best on the
  selection ``metric`` (mean over the tuning seeds; ties: the first in grid order), recorded in
  ``tuning.json`` and ``tuning.md``, and the test cells train with them.
"""

from __future__ import annotations

import itertools
import re
import shutil
from pathlib import Path
from typing import Any, Literal

import msgspec

from swirl.config_files import load_struct, pin_config
from swirl.filtering import Strategy
from swirl.pipeline import Model, Pipeline, RunConfig, run_config_values

ArmMode = Literal[
    "base", "sft", "offline", "online", "outcome", "stepwise-outcome", "trajectory-process"
]
# Arms that roll out whole trajectories from the Stage-1 questions (their trajectories unused).
ROLLOUT_ARMS = frozenset({"outcome", "trajectory-process"})
# Modes whose evaluation does not depend on the seed (no training, greedy decoding): one run.
DETERMINISTIC_MODES = frozenset({"base"})
# Per-question metrics a study compares arms on (swirl.evaluate.EvalRecord fields).
STUDY_METRICS = ("exact_match", "f1", "judge_accuracy", "process_label", "tool_calls")
_COMPARISON = re.compile(r"^(\S+) - (\S+)$")


class ArmConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One arm: how its model is made from the seed's Stage-1 data."""

    name: str
    mode: ArmMode
    filter: Strategy | None = None  # None: the run's filter (sft, online); unfiltered (offline)
    rounds: int = 1  # online only: SWiRL rounds
    train: dict[str, Any] = {}  # TrainConfig fields over the run's [train] table
    # The judge of this arm's step labels (its filter, offline labels) and training rewards,
    # e.g. "reference" beside a run judged "grounded"; None: the run's judge. The seed's
    # Stage-1 trajectories are shared and relabelled for the arm.
    judge: str | None = None


DEFAULT_ARMS = [
    ArmConfig(name="base", mode="base"),
    ArmConfig(name="sft", mode="sft"),
    ArmConfig(name="offline", mode="offline"),
    ArmConfig(name="swirl", mode="online"),
    ArmConfig(name="outcome", mode="outcome"),
]


def is_deterministic(arm: ArmConfig) -> bool:
    return arm.mode in DETERMINISTIC_MODES


class TuningConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The tuning grid: ``grid`` maps TrainConfig fields to the values tried (every combination
    is one run per tuned arm and seed); ``arms``: the tuned arms (None: every trained arm)."""

    grid: dict[str, list[Any]]
    seeds: list[int]
    metric: str = "exact_match"
    arms: list[str] | None = None

    def points(self) -> list[dict[str, Any]]:
        """Every combination of the grid's values, in grid order (the first key slowest)."""
        keys = list(self.grid)
        return [
            dict(zip(keys, values, strict=True))
            for values in itertools.product(*self.grid.values())
        ]


def point_name(point: dict[str, Any]) -> str:
    """A grid point as a directory name, e.g. ``lr=5e-06,kl_coef=0.02``."""
    return ",".join(f"{key}={value}" for key, value in point.items())


class StudyConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A grid of ``arms`` x ``seeds`` over the settings of ``run`` (a ``swirl run`` config);
    ``primary`` and ``tuning``: see the module docstring."""

    run: RunConfig = msgspec.field(default_factory=RunConfig)
    seeds: list[int] = msgspec.field(default_factory=lambda: [0])
    arms: list[ArmConfig] = msgspec.field(default_factory=lambda: list(DEFAULT_ARMS))
    reference: str = "swirl"  # the arm every other is also compared with
    transfer: str | None = None  # a second dataset every arm is evaluated on (e.g. demo-math)
    transfer_limit: int = 50
    primary: list[str] = []  # "ARM - OTHER": the declared primary comparison(s)
    primary_metric: str = "exact_match"
    tuning: TuningConfig | None = None
    # False: a cell's checkpoints are deleted once it is evaluated (a trained cell keeps about
    # 2 GB of weights and optimizer state for the embedded model; the report reads only the
    # evaluation records, and a rerun skips finished stages without them).
    keep_checkpoints: bool = True

    def __post_init__(self) -> None:
        names = [arm.name for arm in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be unique, got {names}")
        if not self.seeds:
            raise ValueError("seeds must name at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds}")
        for arm in self.arms:
            if arm.rounds < 1 or (arm.rounds > 1 and arm.mode != "online"):
                raise ValueError(f"arm {arm.name!r}: rounds > 1 is for online arms, >= 1")
            arm_run(self.run, arm, seed=self.seeds[0])  # a bad train override fails now
        self.primary_pairs()  # a bad primary comparison fails now
        if self.primary_metric not in STUDY_METRICS:
            raise ValueError(
                f"primary_metric {self.primary_metric!r}: expected one of {', '.join(STUDY_METRICS)}"
            )
        if self.tuning is not None:
            self._check_tuning(self.tuning)

    def arm(self, name: str) -> ArmConfig:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise ValueError(f"no arm {name!r} (arms: {', '.join(a.name for a in self.arms)})")

    def primary_pairs(self) -> list[tuple[str, str]]:
        """The declared primary comparisons as (arm, compared arm) pairs, checked."""
        pairs = []
        for text in self.primary:
            match = _COMPARISON.match(text.strip())
            if match is None:
                raise ValueError(f"primary comparison {text!r}: expected 'ARM - OTHER'")
            arm, other = match.groups()
            for name in (arm, other):
                if name not in {a.name for a in self.arms}:
                    raise ValueError(f"primary comparison {text!r}: no arm {name!r}")
            if arm == other or (arm, other) in pairs:
                raise ValueError(f"primary comparison {text!r}: an arm against itself, or twice")
            pairs.append((arm, other))
        return pairs

    def tuned_arms(self) -> list[ArmConfig]:
        """The arms the tuning grid applies to (none without a grid)."""
        if self.tuning is None:
            return []
        if self.tuning.arms is None:
            return [arm for arm in self.arms if not is_deterministic(arm)]
        return [self.arm(name) for name in self.tuning.arms]

    def _check_tuning(self, tuning: TuningConfig) -> None:
        if not tuning.grid or any(not values for values in tuning.grid.values()):
            raise ValueError("[tuning]: give at least one TrainConfig field with a list of values")
        if not tuning.seeds:
            raise ValueError("[tuning]: seeds must name at least one seed")
        if tuning.metric not in STUDY_METRICS:
            raise ValueError(
                f"[tuning] metric {tuning.metric!r}: expected one of {', '.join(STUDY_METRICS)}"
            )
        for arm in self.tuned_arms():
            if is_deterministic(arm):
                raise ValueError(
                    f"[tuning]: arm {arm.name!r} is not trained, there is nothing to tune"
                )
            fixed = sorted(set(arm.train) & set(tuning.grid))
            if fixed:
                raise ValueError(
                    f"[tuning]: arm {arm.name!r} sets {', '.join(fixed)} itself, which the grid chooses"
                )
            for point in tuning.points():  # every grid value must be a valid setting
                arm_run(self.run, with_train(arm, point), seed=tuning.seeds[0])


def cell_eval_dir(root: Path, arm: ArmConfig) -> Path:
    """Where the cell at ``root`` leaves its held-out evaluation (an online arm's last round)."""
    return root / f"round-{arm.rounds}" / "eval" if arm.mode == "online" else root / "eval"


def with_train(arm: ArmConfig, values: dict[str, Any]) -> ArmConfig:
    """``arm`` with ``values`` over its train overrides."""
    return msgspec.structs.replace(arm, train={**arm.train, **values})


def arm_run(run: RunConfig, arm: ArmConfig, *, seed: int) -> RunConfig:
    """The run config of one arm at one seed: its filter, rounds and train overrides; the
    questions are the same for every seed (``data_seed``), sampling and training use ``seed``."""
    values = msgspec.to_builtins(run)
    values.update(seed=seed, data_seed=run.data_seed if run.data_seed is not None else 0)
    values.update(rounds=arm.rounds)
    if arm.filter is not None:
        values["filter"] = arm.filter
    if arm.judge is not None:
        values["judge"] = {**values["judge"], "judge": arm.judge}
    values["train"] = {**values["train"], **arm.train}
    try:
        return msgspec.convert(values, RunConfig)
    except (msgspec.ValidationError, ValueError) as error:
        raise ValueError(f"arm {arm.name!r}: {error}") from None


def load_study_config(path: str | Path | None, **overrides: Any) -> StudyConfig:
    """A StudyConfig from TOML: top-level keys (seeds, reference, transfer, primary,
    primary_metric), a ``[run]`` table with its own ``[run.rollout]``, ``[run.tools]``,
    ``[run.judge]`` and ``[run.train]`` (each over the run defaults), ``[[arms]]``, and
    ``[tuning]`` (seeds, metric, arms, and one list of values per TrainConfig field tuned).
    Errors name the file and the field."""

    def select(toml: dict[str, Any]) -> dict[str, Any]:
        values = dict(toml)
        values["run"] = run_config_values(values.pop("run", {}))
        if "tuning" in values:  # [tuning]: seeds, metric, arms; every other key is a grid axis
            tuning = dict(values["tuning"])
            settings = {k: tuning.pop(k) for k in ("seeds", "metric", "arms") if k in tuning}
            values["tuning"] = {**settings, "grid": tuning}
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

    def cell(
        self,
        seed: int,
        arm: ArmConfig,
        *,
        run: RunConfig | None = None,
        root: Path | None = None,
        transfer: bool = True,
    ) -> Path:
        """Train (unless base) and evaluate one arm at one seed; returns its eval directory.
        ``run`` (default: the study's) and ``root`` (default: ``seed-S/ARM``) place a tuning
        cell; the seed's Stage-1 data are the same for every cell."""
        stage1 = self.stage1(seed).out
        pipeline = Pipeline(
            arm_run(run or self.config.run, arm, seed=seed),
            root or self.out / f"seed-{seed}" / arm.name,
            log=self.log,
        )
        root, stages = pipeline.out, pipeline.stages
        evaluation = cell_eval_dir(root, arm)
        model: Model = pipeline.config.model
        if arm.mode == "online":
            # The arm's first round reuses the seed's Stage-1 files (generation and judging then
            # find nothing left to do), so every arm starts from the same data.
            first = root / "round-1"
            first.mkdir(exist_ok=True)
            # An arm with its own judge labels the shared trajectories in its round-1 judge stage.
            shared = ("trajectories",) if arm.judge is not None else ("trajectories", "labelled")
            for name in shared:
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
        if transfer and self.config.transfer is not None:
            target = self._transfer_pipeline(seed, arm, root)
            stages.run("transfer", target.evaluate, model, target.out / "eval")
        if not self.config.keep_checkpoints:
            for checkpoints in root.glob("**/checkpoints"):
                shutil.rmtree(checkpoints)
        return evaluation

    def _training_data(self, pipeline: Pipeline, arm: ArmConfig, stage1: Path) -> Path:
        """What the arm trains on: filtered (sft), labelled or filtered (offline), or the Stage-1
        trajectories (outcome, trajectory-process: only their questions). Labels are the
        seed's, or the arm's own judge's on the seed's trajectories."""
        if arm.mode in ROLLOUT_ARMS:
            return stage1 / "trajectories.jsonl"
        labelled = stage1 / "labelled.jsonl"
        if arm.judge is not None:
            labelled = pipeline.out / "labelled.jsonl"
            pipeline.stages.run("judge", pipeline.judge, stage1 / "trajectories.jsonl", labelled)
        if arm.mode == "offline" and arm.filter is None:
            return labelled
        filtered = pipeline.out / "filtered.jsonl"
        pipeline.stages.run("filter", pipeline.filter, labelled, filtered)
        return filtered

    def _transfer_pipeline(self, seed: int, arm: ArmConfig, root: Path) -> Pipeline:
        run = arm_run(self.config.run, arm, seed=seed)
        values = msgspec.to_builtins(run)
        values.update(data=self.config.transfer, eval_limit=self.config.transfer_limit)
        values.update(eval_split="test")
        return Pipeline(msgspec.convert(values, RunConfig), root / "transfer", log=self.log)

    def tune(self) -> dict[str, dict[str, Any]]:
        """Every tuned arm at every grid point and tuning seed on the validation split (and
        base once, for reference); returns each tuned arm's chosen values (also written to
        ``tuning.json`` and ``tuning.md``)."""
        from swirl.tuning import tuning_cells, write_tuning_report

        for cell in tuning_cells(self.config, self.out):
            self.log(f"[tuning] seed {cell.seed} arm {cell.arm.name} {point_name(cell.point)}")
            self.cell(
                cell.seed,
                cell.arm,
                run=validation_run(self.config.run),
                root=cell.root,
                transfer=False,
            )
        return write_tuning_report(self.out, self.config)

    def run(self, *, tuning_only: bool = False) -> Path:
        """The tuning grid (if any), then every cell (seeds in order, arms in order; a
        deterministic arm at the first seed only) with the chosen values, then the report;
        returns ``study.md`` (``tuning.md`` with ``tuning_only``)."""
        from swirl.study_report import write_study_report

        chosen = self.tune() if self.config.tuning is not None else {}
        if tuning_only:
            return self.out / "tuning.md"
        for seed in self.config.seeds:
            for arm in tested_arms(self.config, chosen):
                if is_deterministic(arm) and seed != self.config.seeds[0]:
                    continue  # one run serves every seed
                self.log(f"[seed {seed}] arm {arm.name} ({arm.mode})")
                self.cell(seed, arm)
        return write_study_report(self.out, self.config)


def validation_run(run: RunConfig) -> RunConfig:
    """``run`` evaluated on the validation split (tuning cells)."""
    return msgspec.structs.replace(run, eval_split="validation")


def tested_arms(config: StudyConfig, chosen: dict[str, dict[str, Any]]) -> list[ArmConfig]:
    """The arms of the test cells: each tuned arm with its chosen values."""
    return [with_train(arm, chosen[arm.name]) if arm.name in chosen else arm for arm in config.arms]
