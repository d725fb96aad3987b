"""The whole SWiRL pipeline as one resumable job (``swirl run`` / ``swirl iterate``).

Per round: generate trajectories with the current model, judge every step and answer, filter,
train (Stage 2), evaluate; the next round starts from the trained model. ``swirl run`` also
evaluates the base model first and writes a report. Every stage writes files under the run
directory and is recorded in ``stages.json`` when it finishes (with its wall time), so a killed
run resumes at the first unfinished stage, and the stages themselves resume from their files.

Layout of ``runs/<name>/``::

    run_config.json  stages.json  report.md  report_metrics.png  report_time.png
    eval-base/                     summary.json, summary.md, records.jsonl, ...
    round-1/trajectories.jsonl     Stage-1 rollouts
    round-1/labelled.jsonl         + process and outcome labels
    round-1/filtered.jsonl         kept by the filter strategy
    round-1/train/                 checkpoints/, metrics.jsonl, training_curves.png
    round-1/eval/                  the trained model on the held-out questions
    sft/train/, sft/eval/          (compare_sft) SFT on round 1's filtered data, same budget
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec

from swirl.config_files import load_struct, pin_config
from swirl.filtering import Strategy
from swirl.settings import JudgeSettings, RecordedSettings, RolloutSettings, ToolSettings
from swirl.training.config import SAMPLED_MODES, TrainConfig


def _run_train_defaults() -> TrainConfig:
    """Stage-2 defaults of the main job (the paths and data are filled in per stage)."""
    return TrainConfig(
        steps=10,
        states_per_step=4,
        samples_per_state=4,
        # Measured on demo-qa (10 filtered trajectories, 20 states): 1e-5 collapsed the
        # policy's entropy to 0.08 and it searched until the step cap (EM 0.04 -> 0.00);
        # 5e-6 gave EM 0.04 -> 0.08 and process label 0.35 -> 0.50.
        lr=5e-6,
        kl_coef=0.02,
    )


class RunConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The main job's knobs, validated as a whole when loaded (a typo in any table fails before
    anything runs). Defaults fit in well under 15 minutes on 2 CPU cores (5.0 measured), and
    the Stage-1 size (200 questions x 4 samples, at validation seed 0) and the one SWiRL round (at
    validation seeds 0 and 1) were chosen on demo-qa's validation split (``docs/study-demo-qa.md``;
    a longer two-round recipe did better there at about 4x the time). ``rollout``, ``tools``,
    ``judge`` and ``train`` are the Stage-1 and Stage-2 settings (:mod:`swirl.settings`,
    :class:`~swirl.training.config.TrainConfig`; its paths and data are filled in per stage)."""

    data: str = "demo-qa"
    model: str | None = None  # None: the embedded SmolLM2-135M-Instruct
    rounds: int = 1  # a second round of this recipe collapsed on validation seed 1 (tune-4)
    eval_limit: int = 50  # held-out questions per evaluation
    train_limit: int = 200  # training questions rolled out per round
    # Questions of the train split after the training ones, never trained on: the split to tune
    # on (eval_split = "validation"); the test split is only for reporting.
    validation_limit: int = 50
    eval_split: Literal["test", "validation"] = "test"
    samples_per_question: int = 4  # paper: 5
    temperature: float = 0.5  # Stage-1 sampling (evaluation is greedy)
    filter: Strategy = "process"
    filter_size: int | None = None
    compare_sft: bool = False
    seed: int = 0  # sampling, filtering and training
    data_seed: int | None = None  # which built-in demo questions are drawn (None: seed)
    rollout: RolloutSettings = msgspec.field(
        default_factory=lambda: RolloutSettings(max_new_tokens=96)
    )
    tools: ToolSettings = msgspec.field(default_factory=ToolSettings)
    judge: JudgeSettings = msgspec.field(default_factory=JudgeSettings)
    train: TrainConfig = msgspec.field(default_factory=_run_train_defaults)

    def __post_init__(self) -> None:
        for name in ("rounds", "eval_limit", "train_limit", "samples_per_question"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"run config field {name!r} must be >= 1, got {getattr(self, name)}"
                )


_TABLES = ("rollout", "tools", "judge", "train")  # nested settings, merged over the run defaults


def run_config_values(
    toml: dict[str, Any], table_overrides: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """RunConfig values from a TOML document (top-level keys or a ``[run]`` table, and the
    ``[rollout]``, ``[tools]``, ``[judge]``, ``[train]`` tables): each table given, with its
    ``table_overrides``, is merged over the run's default for it."""
    defaults = RunConfig()
    toml = dict(toml)
    tables = {name: toml.pop(name, {}) for name in _TABLES}
    values = dict(toml.pop("run", toml))
    for name in _TABLES:
        given = {**tables[name], **(table_overrides or {}).get(name, {})}
        if given:
            values[name] = {**msgspec.to_builtins(getattr(defaults, name)), **given}
    return values


def load_run_config(path: str | Path | None, **overrides: Any) -> RunConfig:
    """A RunConfig from TOML (see :func:`run_config_values`) and keyword overrides (None values
    ignored; a table's overrides as a dict, over the file's table). Errors name the file and
    the field."""
    table_overrides = {name: overrides.pop(name) for name in _TABLES if name in overrides}
    return load_struct(
        path,
        RunConfig,
        overrides=overrides,
        select=lambda toml: run_config_values(toml, table_overrides),
        what="run config",
    )


@dataclass(frozen=True)
class TrainedModel:
    """The model a training stage wrote (under ``train_dir``), looked up only when a stage that
    reads it runs: a finished run needs no checkpoint on disk, so they may be deleted."""

    train_dir: Path

    def path(self) -> str:
        """The newest checkpoint's model folder."""
        from swirl.training.checkpoint import latest_checkpoint

        checkpoint = latest_checkpoint(self.train_dir / "checkpoints")
        if checkpoint is None:
            raise FileNotFoundError(
                f"{self.train_dir}: no checkpoint (training did not finish, or its checkpoints "
                "were deleted)"
            )
        return str(checkpoint / "model")


Model = str | None | TrainedModel  # a path or name, the embedded model, or a training's output


def model_path(model: Model) -> str | None:
    """``model`` as :class:`~swirl.backends.hf.HFBackend` and the trainer take it."""
    return model.path() if isinstance(model, TrainedModel) else model


class Stages:
    """Which stages of a run are done, and how long each took (``stages.json``)."""

    def __init__(self, path: Path, log: Callable[[str], None]) -> None:
        self.path = path
        self.log = log
        self.done: dict[str, float] = json.loads(path.read_text()) if path.exists() else {}

    def run(self, name: str, work: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """``work(*args, **kwargs)`` unless stage ``name`` finished in an earlier run; a
        :class:`TrainedModel` argument becomes its checkpoint's path only if the stage runs."""
        log = self.log
        if name in self.done:
            log(f"[{name}] done already ({self.done[name]:.0f} s), skipped")
            return
        log(f"[{name}] ...")
        started = time.perf_counter()
        work(*[a.path() if isinstance(a, TrainedModel) else a for a in args], **kwargs)
        self.done[name] = time.perf_counter() - started
        staging = self.path.with_suffix(".tmp")
        staging.write_text(json.dumps(self.done, indent=2))
        staging.replace(self.path)
        log(f"[{name}] finished in {self.done[name]:.0f} s")


class Pipeline:
    """Runs the stages of :class:`RunConfig` under ``out``; see the module docstring."""

    def __init__(
        self,
        config: RunConfig,
        out: str | Path,
        *,
        threads: int | None = None,
        log: Callable[[str], None] = print,
    ):
        """``threads``: torch CPU threads for this process (not part of the run's identity)."""
        self.config = config
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.log = log
        pin_config(self.out / "run_config.json", config, "run")
        self.stages = Stages(self.out / "stages.json", log)
        self.resources = contextlib.ExitStack()
        self.server_root: str | None = None
        if threads:
            import torch

            torch.set_num_threads(threads)

    # -- building blocks ---------------------------------------------------------------------

    @property
    def data_seed(self) -> int:
        return self.config.seed if self.config.data_seed is None else self.config.data_seed

    def _examples(self, split: str, limit: int):
        from swirl.data import load_examples

        return load_examples(self.config.data, split=split, limit=limit, seed=self.data_seed)

    @property
    def eval_data_split(self) -> str:
        """The dataset split the held-out questions come from: ``eval_split``, except for a
        dataset without a validation split, whose validation questions are train-split ones."""
        from swirl.data.registry import splits_of

        split = self.config.eval_split
        return split if split in (splits_of(self.config.data) or (split,)) else "train"

    def eval_examples(self):
        """The held-out questions: the first ``eval_limit`` of the test split; for validation
        the first ``validation_limit`` of the dataset's validation split, or where it has none
        the ``validation_limit`` train-split questions after the ``train_limit`` training ones."""
        config = self.config
        if config.eval_split == "test":
            return self._examples("test", config.eval_limit)
        if self.eval_data_split == "validation":
            return self._examples("validation", config.validation_limit)
        # A split's first N questions are the same for every larger N (drawn in sequence).
        drawn = self._examples("train", config.train_limit + config.validation_limit)
        return drawn[config.train_limit :]

    def _tools(self, examples, split: str):
        from swirl.tools.factory import tools_for_examples

        return tools_for_examples(
            examples, self.config.data, split=split, settings=self.config.tools
        )

    def _judge(self):
        from swirl.judge.loading import load_judge

        return load_judge(self.config.judge)

    def _env(self):
        from swirl.env import EnvConfig

        return EnvConfig.from_settings(self.config.rollout, self.config.tools)

    def _params(self, temperature: float):
        from swirl.backends.base import SamplingParams

        return SamplingParams(
            max_new_tokens=self.config.rollout.max_new_tokens,
            temperature=temperature,
            seed=self.config.seed,
        )

    def evaluate(self, model: str | None, out: Path) -> None:
        """Greedy multi-step rollouts of the held-out questions, judged and scored."""
        from swirl.backends.hf import HFBackend
        from swirl.data.fingerprint import evaluation_fingerprints
        from swirl.env import run_episodes
        from swirl.evaluate import evaluate

        examples = self.eval_examples()
        split = self.eval_data_split

        def rollout(pending):
            pending = list(pending)
            if not pending:
                return iter(())
            return run_episodes(
                pending,
                HFBackend.load(model),
                tools=self._tools(examples, split),
                params=self._params(0.0),
                config=self._env(),
            )

        evaluate(
            examples,
            rollout,
            self._judge(),
            out,
            settings={
                "model": model or "smollm2-135m",
                "data": self.config.data,
                "split": self.config.eval_split,
                "judge": self.config.judge.spec,
            },
            fingerprints=evaluation_fingerprints(
                examples,
                self.config.data,
                split=split,
                retriever_url=self.config.tools.retriever_url,
            ),
            training=self._examples("train", self.config.train_limit),
        )

    def rollout_server(self) -> str | None:
        """The root URL of the run's vLLM server (``train.serving``: started on first use and
        kept for the run, so Stage 1 and training share it), or None for in-process rollouts."""
        serving = self.config.train.serving
        if not serving.remote:
            return None
        if self.server_root is None:
            from swirl.backends.serving import vllm_server
            from swirl.model import resolve_model

            if self.config.train.lora is not None:
                raise ValueError(
                    "swirl run with a vLLM rollout server trains full weights; for LoRA use "
                    "swirl train --rollout vllm --lora"
                )
            self.server_root = self.resources.enter_context(
                vllm_server(
                    serving, model_dir=resolve_model(self.config.model), work_dir=self.rollout_dir
                )
            )
        return self.server_root

    @property
    def rollout_dir(self) -> Path:
        return self.out / "rollout"

    def close(self) -> None:
        """Stop the run's rollout server, if one was started."""
        self.resources.close()
        self.server_root = None

    def _stage1_backend(self, model: str | None):
        """Stage 1's sampler: the in-process engine on ``model``, or the run's vLLM server
        pointed at it."""
        root = self.rollout_server()
        if root is None:
            from swirl.backends.hf import HFBackend

            return HFBackend.load(model)
        from swirl.backends.serving import served_backend
        from swirl.model import resolve_model

        return served_backend(root, resolve_model(model), self.rollout_dir)

    def generate(self, model: str | None, out: Path) -> None:
        from swirl.generate import generate_to_file

        examples = self._examples("train", self.config.train_limit)
        summary = generate_to_file(
            examples,
            out,
            backend=lambda: self._stage1_backend(model),
            tools=lambda: self._tools(examples, "train"),
            params=self._params(self.config.temperature),
            config=self._env(),
            samples_per_question=self.config.samples_per_question,
            settings=RecordedSettings(
                data=self.config.data,
                data_seed=self.data_seed,
                model=model,
                temperature=self.config.temperature,
                seed=self.config.seed,
                samples_per_question=self.config.samples_per_question,
                rollout=self.config.rollout,
                tools=self.config.tools,
            ),
        )
        for line in summary.lines():
            self.log(f"  {line}")

    def judge(self, source: Path, target: Path) -> None:
        from swirl.judge.labelling import label_file
        from swirl.settings import read_settings, write_settings

        examples = {e.id: e for e in self._examples("train", self.config.train_limit)}
        recorded = read_settings(source)
        if recorded is not None:
            write_settings(target, msgspec.structs.replace(recorded, judge=self.config.judge))
        label_file(self._judge(), examples, source, target, "both")

    def filter(self, source: Path, target: Path) -> None:
        from swirl.filtering import copy_records, read_labels, select_indices, summarize

        labels = read_labels(source)
        for count in summarize(labels):
            self.log(f"  {count.strategy}: {count.trajectories} trajectories, {count.steps} steps")
        kept = select_indices(labels, self.config.filter, self.config.filter_size, self.config.seed)
        if not kept:
            raise ValueError(
                f"{source}: the {self.config.filter!r} filter keeps no trajectory; generate more "
                "(train_limit, samples_per_question) or use another --filter"
            )
        copy_records(source, target, kept)

    def train_config(
        self, trajectories: Path, model: str | None, out: Path, *, mode: str
    ) -> TrainConfig:
        """The :class:`~swirl.training.config.TrainConfig` of one training stage: the run's
        ``train`` table with the stage's paths; data, tools, judge and the online turn budget
        come from the settings recorded with the trajectories (the run's own)."""
        from swirl.training.config import load_config

        overrides = {
            **msgspec.to_builtins(self.config.train),
            "trajectories": str(trajectories),
            "out": str(out),
            "model": model,
            "mode": mode,
            "seed": self.config.seed,
        }
        if mode not in SAMPLED_MODES:
            # The run's KL, importance-sampling and sampler options are for actions sampled from
            # the policy; SFT and offline train on recorded actions, where none applies.
            overrides.update(kl_coef=0.0, kl_in_reward=False, tis_cap=None, serving={})
        elif self.config.train.serving.remote:
            root = self.rollout_server()
            overrides["serving"] = {**overrides["serving"], "engine": f"vllm:{root}"}
        return load_config(None, **overrides)

    def train(self, trajectories: Path, model: str | None, out: Path, *, mode: str) -> None:
        from swirl.training.trainer import Trainer

        Trainer(self.train_config(trajectories, model, out, mode=mode)).train()

    # -- the job -------------------------------------------------------------------------------

    def trained_model(self, round_dir: Path) -> TrainedModel:
        return TrainedModel(round_dir / "train")

    def iterate(self) -> Model:
        """Run the configured rounds; return the final model (the last round's training). A
        rollout server the rounds started is stopped at the end."""
        try:
            return self._rounds()
        finally:
            self.close()

    def _rounds(self) -> Model:
        model: Model = self.config.model
        for number in range(1, self.config.rounds + 1):
            root = self.out / f"round-{number}"
            root.mkdir(exist_ok=True)
            stage = f"round-{number}"
            trajectories, labelled = root / "trajectories.jsonl", root / "labelled.jsonl"
            filtered = root / "filtered.jsonl"
            self.stages.run(f"{stage}/generate", self.generate, model, trajectories)
            self.stages.run(f"{stage}/judge", self.judge, trajectories, labelled)
            self.stages.run(f"{stage}/filter", self.filter, labelled, filtered)
            self.stages.run(
                f"{stage}/train", self.train, filtered, model, root / "train", mode="online"
            )
            model = self.trained_model(root)
            self.stages.run(f"{stage}/eval", self.evaluate, model, root / "eval")
        return model

    def run(self) -> Path:
        """Evaluate the base model, run the rounds (and the SFT comparison), write the report."""
        self.stages.run("eval-base", self.evaluate, self.config.model, self.out / "eval-base")
        self.iterate()
        if self.config.compare_sft:
            sft = self.out / "sft"
            filtered = self.out / "round-1" / "filtered.jsonl"
            self.stages.run(
                "sft/train", self.train, filtered, self.config.model, sft / "train", mode="sft"
            )
            self.stages.run("sft/eval", self.evaluate, self.trained_model(sft), sft / "eval")
        from swirl.report import write_run_report

        return write_run_report(self.out, self.stages.done)
