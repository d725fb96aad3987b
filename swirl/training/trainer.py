"""The SWiRL Stage-2 trainer: step-wise policy gradient over prefix-shared packed batches.

Each optimizer step draws states (prefixes ``s_i`` of filtered trajectories), gets actions for
them (sampled by the live policy and judged, or the recorded ones), turns rewards into per-state
baselined advantages, packs every state and action of the step as token trees (a trajectory's
states share one context), and runs the fused policy loss row group by row group.
"""

from __future__ import annotations

import copy
import logging
import math
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import torch

from swirl.jsonl import read_jsonl
from swirl.judge.base import Judge
from swirl.packing import PackedBatch, pack
from swirl.schema import Example, Trajectory
from swirl.settings import (
    JudgeSettings,
    RolloutSettings,
    ToolSettings,
    differing_fields,
    read_settings,
)
from swirl.training import distributed as dd
from swirl.training.advantages import Baseline, group_advantages, resolve_baseline
from swirl.training.checkpoint import latest_checkpoint, load_trainer_state, save_checkpoint
from swirl.training.config import SAMPLED_MODES, TrainConfig
from swirl.training.metrics_log import MetricsLog, read_metrics
from swirl.training.objective import (
    MicroBatch,
    PackedPolicy,
    UpdateStats,
    accumulate_policy_gradient,
    packed_logprobs,
    pad_passes,
    row_passes,
    target_loss_scale,
)
from swirl.training.plots import plot_curves
from swirl.training.schedule import make_scheduler
from swirl.training.sources import ActionSource, RecordedActions, SampledActions
from swirl.training.states import State, StateStream, training_states
from swirl.training.trees import ActionSample, build_sequences

log = logging.getLogger(__name__)


class NonFiniteError(RuntimeError):
    """Too many optimizer steps in a row had a non-finite loss or gradient."""


@dataclass
class TrainResult:
    out: Path
    checkpoint: Path
    steps: int
    metrics: list[dict[str, Any]]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass(frozen=True)
class Collected:
    """One rank's actions of a step: ``rewards`` and ``advantages`` are ``[S]`` over ``scored``
    (the samples whose reward is known); ``seconds`` is the wall time of sampling and judging."""

    states: list[State]
    samples: list[ActionSample]
    scored: list[ActionSample]
    rewards: torch.Tensor
    advantages: torch.Tensor
    seconds: float

    @property
    def sampled_tokens(self) -> int:
        """Tokens of all the step's actions."""
        return sum(len(tokens) for s in self.samples for _, tokens in s.actions)


@dataclass(frozen=True)
class Packed:
    """One rank's packed batch, its forward passes (padded to the most any rank runs) and the
    ``[M]`` final loss weight of every target (:func:`target_loss_scale`)."""

    batch: PackedBatch
    passes: list[MicroBatch]
    scale: torch.Tensor


def stage1_turn_budget(trajectories: Sequence[Trajectory]) -> int:
    """The per-turn token budget the trajectories were generated with (their ``max_new_tokens``
    metadata), so online samples are as long as the recorded actions may be. Files written
    before it was recorded: the longest recorded action, a lower bound of that budget."""
    recorded = [t.metadata.get("max_new_tokens") for t in trajectories]
    budgets = [int(b) for b in recorded if isinstance(b, int | float)]
    if budgets:
        return max(budgets)
    return max((len(s.token_ids) for t in trajectories for s in t.steps), default=1)


def with_recorded_settings(config: TrainConfig, trajectories: Sequence[Trajectory]) -> TrainConfig:
    """``config`` with every setting left None taken from what was recorded with its
    trajectories (:mod:`swirl.settings`), else the defaults; online, the data must be known.
    An explicit tool or judge setting that differs from the recorded one is warned about."""
    recorded = read_settings(config.trajectories)
    source = config.trajectories
    for name in ("tools", "judge"):
        given, kept = getattr(config, name), getattr(recorded, name, None)
        if given is not None and kept is not None:
            for field in differing_fields(kept, given):
                warnings.warn(
                    f"{name}.{field} = {getattr(given, field)!r} overrides "
                    f"{getattr(kept, field)!r}, recorded with {source}",
                    stacklevel=3,
                )
    data = config.data or (recorded.data if recorded else None)
    if config.mode in SAMPLED_MODES and data is None:
        raise ValueError(
            f"{source} records no settings: give data (--data), the dataset of its questions"
        )
    budget = config.max_new_tokens
    if budget is None and config.mode in SAMPLED_MODES:
        budget = recorded.rollout.max_new_tokens if recorded else stage1_turn_budget(trajectories)
    return msgspec.structs.replace(
        config,
        data=data,
        data_format=config.data_format or (recorded.data_format if recorded else None),
        data_split=config.data_split or (recorded.split if recorded else "train"),
        data_seed=config.data_seed
        if config.data_seed is not None
        else getattr(recorded, "data_seed", 0),
        tools=config.tools or (recorded.tools if recorded else ToolSettings()),
        rollout=config.rollout or (recorded.rollout if recorded else RolloutSettings()),
        judge=config.judge or (recorded.judge if recorded and recorded.judge else JudgeSettings()),
        max_new_tokens=budget,
    )


def offline_states(states: list[State], baseline: Baseline, source: str) -> list[State]:
    """The states whose recorded action carries a process label; refuses data on which the
    baseline gives every action advantage 0."""
    labelled = [s for s in states if s.process is not None and s.process.verdict is not None]
    if not labelled:
        raise ValueError(
            f"{source}: no step carries a process label; run `swirl judge` first (offline mode "
            "trains on the stored labels)"
        )
    verdicts = {s.process.verdict for s in labelled if s.process is not None}
    if baseline == "batch_mean" and len(verdicts) == 1:
        label = "GOOD" if verdicts.pop() else "BAD"
        raise ValueError(
            f"{source}: all {len(labelled)} labelled steps are {label} (a process-filtered file?), "
            "so the batch-mean baseline gives every action advantage 0 and nothing is learned; "
            "train offline on the labelled, unfiltered trajectories (the output of `swirl judge`) "
            "or use --baseline none"
        )
    return labelled


class Trainer:
    """Build with a :class:`TrainConfig`; :meth:`train` runs (or resumes) to ``config.steps``."""

    def __init__(
        self,
        config: TrainConfig,
        *,
        judge: Judge | None = None,
        resume: bool = True,
        progress: bool = True,
    ) -> None:
        """``judge`` overrides ``config.judge`` (any object with the Judge protocol, e.g. a custom
        reward); ``resume=False`` ignores checkpoints in ``config.out``."""
        if not config.trajectories or not config.out:
            raise ValueError("config fields 'trajectories' and 'out' are required")
        self.trajectories = read_jsonl(config.trajectories, Trajectory)
        config = with_recorded_settings(config, self.trajectories)
        self.config = config
        self.out = Path(config.out)
        self.progress = progress
        self.device = resolve_device(config.device)
        self.dist = dd.init_distributed(self.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.rank % torch.cuda.device_count())
        torch.manual_seed(config.seed)

        self.baseline: Baseline = resolve_baseline(config.mode, config.baseline)
        self.examples = self._load_examples() if config.mode in SAMPLED_MODES else {}
        items: Sequence[State] | Sequence[Example]
        if config.mode == "outcome":
            items = self._questions()
        else:
            items = training_states(self.trajectories)
            if config.mode == "offline":
                items = offline_states(items, self.baseline, config.trajectories)
        checkpoint = latest_checkpoint(self.out / "checkpoints") if resume else None
        self.start_step = 0
        position = 0
        if checkpoint is not None:
            saved = msgspec.json.decode((checkpoint / "state.json").read_bytes())
            self.start_step, position = int(saved["step"]), int(saved["data_position"])
        self.stream = StateStream(items, seed=config.seed, position=position)

        self.model, self.tokenizer = self._load_policy(checkpoint)
        self.vocab_size = int(self.model.config.vocab_size)
        self.pad_id = self.tokenizer.pad_token_id or 0
        # Data-parallel ranks sample from a full (unsharded) copy, refreshed after each step, so
        # generation runs without collectives however many forward passes each rank needs.
        self.sampler = (
            copy.deepcopy(self.model)
            if self.dist.enabled and config.mode in SAMPLED_MODES
            else self.model
        )
        autocast = torch.bfloat16 if config.dtype == "bf16" else None
        # Sampled actions are scored under the distribution they were drawn from.
        temperature = config.temperature if config.mode in SAMPLED_MODES else 1.0
        self.policy = dd.shard_policy(
            PackedPolicy(self.model, autocast=autocast, temperature=temperature), self.dist
        )
        self.reference = (
            PackedPolicy(self._initial_policy(), autocast=autocast, temperature=temperature)
            if config.kl_coef > 0
            else None
        )
        self.trainable = [p for p in self.policy.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            self.trainable, lr=config.lr, weight_decay=config.weight_decay, foreach=False
        )
        total_updates = config.steps * config.updates_per_batch
        self.scheduler = make_scheduler(
            self.optimizer,
            total_steps=total_updates,
            warmup_steps=config.warmup_steps,
            schedule=config.schedule,
        )
        if checkpoint is not None:
            optimizer_state, _ = load_trainer_state(checkpoint, scheduler=self.scheduler)
            dd.load_optimizer_state(self.policy, self.optimizer, optimizer_state, self.dist)
        self.source = self._action_source(judge)

    # -- setup -----------------------------------------------------------------------------

    def _load_policy(self, checkpoint: Path | None) -> tuple[torch.nn.Module, Any]:
        from swirl.model import disable_dropout, load_model

        config = self.config
        lora_checkpoint = checkpoint is not None and config.lora is not None
        source = (
            str(checkpoint / "model")
            if checkpoint is not None and not lora_checkpoint
            else config.model
        )
        model, tokenizer = load_model(source, device=self.device)
        if config.gradient_checkpointing:
            # transformers 5.x renamed it (the old name warns); 4.x only has the old one.
            if hasattr(model, "activation_checkpointing_enable"):
                model.activation_checkpointing_enable(
                    activation_checkpointing_kwargs={"use_reentrant": False}
                )
            else:
                model.gradient_checkpointing_enable(
                    gradient_checkpointing_kwargs={"use_reentrant": False}
                )
            model.config.use_cache = False
        if config.lora is not None:
            from peft import LoraConfig, PeftModel, get_peft_model

            if lora_checkpoint:
                model = PeftModel.from_pretrained(model, checkpoint / "model", is_trainable=True)
            else:
                lora = config.lora
                model = get_peft_model(
                    model,
                    LoraConfig(
                        r=lora.rank,
                        lora_alpha=lora.alpha,
                        lora_dropout=lora.dropout,
                        target_modules=list(lora.target_modules),
                        task_type="CAUSAL_LM",
                    ),
                )
        if config.mode != "sft":
            # The sampler runs in eval mode: with dropout on, the scored distribution would not be
            # the sampled one (the first PPO ratio != 1, the initial KL != 0).
            disable_dropout(model)
        model.train()
        return model, tokenizer

    def _initial_policy(self) -> torch.nn.Module:
        """The KL reference: the initial policy (also on resume), frozen. With LoRA it is the
        base model, which equals the initial policy since LoRA starts as the identity."""
        from swirl.model import load_model

        reference, _ = load_model(self.config.model, device=self.device)
        reference.eval()
        reference.requires_grad_(False)
        return reference

    def _load_examples(self) -> dict[str, Example]:
        """The questions of the run's data (gold annotations for the judge), by id."""
        from swirl.data import load_examples

        config = self.config
        assert config.data and config.data_split  # resolved by with_recorded_settings
        examples = load_examples(
            config.data,
            split=config.data_split,
            seed=config.data_seed or 0,
            format=config.data_format,
        )
        return {e.id: e for e in examples}

    def _questions(self) -> list[Example]:
        """Outcome mode: the questions of the trajectory file, in file order."""
        ids = dict.fromkeys(t.example_id for t in self.trajectories)
        missing = [i for i in ids if i not in self.examples]
        if missing:
            raise ValueError(
                f"{self.config.trajectories}: question {missing[0]} (and {len(missing) - 1} more) "
                f"is not in {self.config.data} (pass the --data the trajectories came from)"
            )
        return [self.examples[i] for i in ids]

    def _action_source(self, judge: Judge | None) -> ActionSource:
        config = self.config
        if config.mode == "sft":
            return RecordedActions("one")
        if config.mode == "offline":
            return RecordedActions("label")
        from swirl.backends.base import SamplingParams
        from swirl.backends.hf import HFBackend
        from swirl.judge.loading import load_judge
        from swirl.tools.factory import tools_for_examples

        # resolved by with_recorded_settings
        assert config.data and config.tools and config.judge and config.rollout
        assert config.max_new_tokens is not None
        params = SamplingParams(
            max_new_tokens=config.max_new_tokens, temperature=config.temperature, top_p=config.top_p
        )
        tools = tools_for_examples(
            list(self.examples.values()),
            config.data,
            split=config.data_split or "train",
            data_format=config.data_format,
            settings=config.tools,
        )
        backend = HFBackend(self.sampler, self.tokenizer)
        judge = judge or load_judge(config.judge)
        if config.mode == "outcome":
            from swirl.env import EnvConfig
            from swirl.training.outcome import OutcomeRollouts

            return OutcomeRollouts(
                backend,
                judge,
                tools=tools,
                env=EnvConfig.from_settings(
                    config.rollout,
                    config.tools,
                    max_live_episodes=config.states_per_step * config.samples_per_state,
                ),
                samples_per_question=config.samples_per_state,
                params=params,
                seed=config.seed,
            )
        from swirl.training.rewards import StepScorer

        scorer = StepScorer(
            judge,
            examples=self.examples,
            tools=tools,
            tokenizer=self.tokenizer,
            observation_max_tokens=config.tools.observation_tokens,
        )
        return SampledActions(
            backend,
            scorer,
            samples_per_state=config.samples_per_state,
            params=params,
            seed=config.seed,
        )

    # -- one step: collect, pack, update, record -------------------------------------------

    def _all_reduce(self, values: list[float]) -> list[float]:
        return dd.all_reduce_sum(values, self.dist)

    def _rank_states(self) -> tuple[list, list[int]]:
        """This rank's share of the step's states (questions in outcome mode) and how often each
        was drawn before it in the step (every rank advances the stream alike and counts over all
        ranks' draws)."""
        states = self.stream.take(self.config.states_per_step * self.dist.world_size)
        seen: Counter[object] = Counter()
        occurrences = []
        for state in states:
            key = (
                state.id if isinstance(state, Example) else (state.trajectory_id, state.step_index)
            )
            occurrences.append(seen[key])
            seen[key] += 1
        share = slice(self.dist.rank, None, self.dist.world_size)
        return states[share], occurrences[share]

    def _collect(self, step: int) -> Collected:
        """This rank's actions of the step with their rewards and advantages."""
        started = time.perf_counter()
        states, occurrences = self._rank_states()
        if self.sampler is not self.model:
            dd.refresh_full_copy(self.policy, self.sampler, prefix="model.")
        samples = self.source.samples(states, step, occurrences)
        scored = [s for s in samples if s.reward is not None]
        rewards = torch.tensor([s.reward for s in scored], dtype=torch.float32)
        groups = torch.tensor([s.group for s in scored], dtype=torch.long)
        advantages = group_advantages(
            rewards,
            groups,
            baseline=self.baseline,
            scale_by_std=self.config.scale_by_std,
            all_reduce=self._all_reduce,
        )
        return Collected(
            states, samples, scored, rewards, advantages, time.perf_counter() - started
        )

    def _pack(self, collected: Collected) -> Packed:
        """Pack this rank's actions, pad its passes to the most any rank needs, and give every
        target its final loss weight from the totals over all ranks."""
        config = self.config
        naive = config.layout == "naive"
        sequences = build_sequences(
            collected.scored, collected.advantages.tolist(), share=not naive
        )
        batch = pack(
            sequences,
            config.tokens_per_micro_batch,
            share_prefixes=not naive,
            vocab_size=self.vocab_size,
            pad_id=self.pad_id,
        )
        passes = row_passes(batch)
        branches = int(np.unique(batch.target_branch).size)
        total_targets, total_branches = self._all_reduce([float(batch.num_targets), branches])
        (count,) = dd.all_reduce_max([float(len(passes))], self.dist)
        scale = target_loss_scale(
            batch,
            config.normalize,
            total_targets=max(int(total_targets), 1),
            total_branches=max(int(total_branches), 1),
            world_size=self.dist.world_size,
        )
        return Packed(batch, pad_passes(passes, int(count), pad_id=self.pad_id), scale)

    def _update(self, packed: Packed) -> tuple[list[UpdateStats], list[float]]:
        """``updates_per_batch`` optimizer updates on the packed batch; returns each update's
        statistics (this rank's sums) and gradient norm. An update whose loss or gradient is not
        finite on any rank is skipped on every rank (``finite`` False)."""
        config = self.config
        passes = packed.passes
        if not passes:  # no rank has an action to train on
            return [], []
        ref_logp = packed_logprobs(self.reference, passes) if self.reference is not None else None
        old_logp = packed_logprobs(self.policy, passes) if config.updates_per_batch > 1 else None
        inputs_finite = all(
            bool(torch.isfinite(v).all()) for v in (ref_logp, old_logp) if v is not None
        )
        (bad_inputs,) = dd.all_reduce_max([float(not inputs_finite)], self.dist)
        if bad_inputs:
            self.optimizer.zero_grad(set_to_none=True)
            return [UpdateStats(finite=False)] * config.updates_per_batch, [math.nan]
        updates, norms = [], []
        for _ in range(config.updates_per_batch):
            self.optimizer.zero_grad(set_to_none=True)
            stats = accumulate_policy_gradient(
                self.policy,
                passes,
                packed.scale,
                old_logp=old_logp,
                ref_logp=ref_logp,
                clip_eps=config.clip_eps,
                kl_coef=config.kl_coef,
            )
            grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, config.max_grad_norm)
            if hasattr(grad_norm, "full_tensor"):
                grad_norm = grad_norm.full_tensor()
            norms.append(float(grad_norm))
            local_bad = not (stats.finite and math.isfinite(norms[-1]))
            (bad,) = dd.all_reduce_max([float(local_bad)], self.dist)
            stats.finite = not bad
            updates.append(stats)
            if bad:
                self.optimizer.zero_grad(set_to_none=True)
                continue
            self.optimizer.step()
            self.scheduler.step()
        return updates, norms

    def _step(self, step: int) -> dict[str, Any]:
        started = time.perf_counter()
        collected = self._collect(step)
        packed = self._pack(collected)
        updates, norms = self._update(packed)
        return self._record(step, collected, packed, updates, norms, started)

    def _record(
        self,
        step: int,
        collected: Collected,
        packed: Packed,
        updates: list[UpdateStats],
        norms: list[float],
        started: float,
    ) -> dict[str, Any]:
        """The step's metrics over all ranks; every key is defined in :data:`METRICS`."""
        mode = self.config.mode
        advantages = collected.advantages
        local = [
            float(collected.rewards.sum()),
            float(advantages.sum()),
            float(advantages.square().sum()),
            float(advantages.abs().sum()),
            float(advantages.numel()),
            float(len(collected.states)),
            float(len(collected.samples)),
            float(packed.batch.packed_tokens),
            float(packed.batch.naive_tokens),
            float(collected.sampled_tokens if self.config.mode in SAMPLED_MODES else 0),
        ]
        fields = ("loss", "targets", "logp", "entropy", "kl", "ratio", "clipped")
        for stats in updates:
            local += [float(getattr(stats, name)) for name in fields]
        reduced = self._all_reduce(local)
        (reward_sum, advantage_sum, advantage_square, advantage_abs, scored, states, actions) = (
            reduced[:7]
        )
        packed_tokens, naive_tokens, sampled_tokens = reduced[7:10]
        per_update = [
            dict(
                zip(fields, reduced[10 + i * len(fields) : 10 + (i + 1) * len(fields)], strict=True)
            )
            for i in range(len(updates))
        ]
        elapsed = time.perf_counter() - started
        kl_key = "kl" if mode in SAMPLED_MODES else "k3_recorded"
        record: dict[str, Any] = {"step": step + 1}
        record.update(dict.fromkeys(("reward", "advantage_mean", "advantage_std", "loss")))
        record.update(dict.fromkeys(("logp_mean", "entropy", kl_key, "ratio_mean", "clip_frac")))
        if scored and mode != "sft":  # SFT: every recorded action weighs 1, there is no reward
            mean = advantage_sum / scored
            record["reward"] = reward_sum / scored
            record["advantage_mean"] = mean
            record["advantage_std"] = math.sqrt(max(advantage_square / scored - mean * mean, 0.0))
            if advantage_abs == 0:
                log.warning(
                    "step %d: every advantage is 0 (the rewards are equal within each baseline "
                    "group), so only the KL term trains",
                    step + 1,
                )
        finite = [u for u, stats in zip(per_update, updates, strict=True) if stats.finite]
        world = self.dist.world_size
        record["loss"] = sum(u["loss"] for u in finite) / (world * len(finite)) if finite else None
        first = per_update[0] if finite and updates[0].finite else None
        if first is not None and first["targets"]:
            count = first["targets"]
            record["logp_mean"] = first["logp"] / count
            record["entropy"] = first["entropy"] / count
            if self.reference is not None:
                record[kl_key] = first["kl"] / count
        if self.config.updates_per_batch > 1 and finite:
            count = sum(u["targets"] for u in finite) or 1
            record["ratio_mean"] = sum(u["ratio"] for u in finite) / count
            if self.config.clip_eps is not None:
                record["clip_frac"] = sum(u["clipped"] for u in finite) / count
        record.update(
            {
                "grad_norm": norms[0] if norms else None,
                "lr": self.scheduler.get_last_lr()[0],
                "states": int(states),
                "actions": int(actions),
                "unscored": int(actions - scored),
                "tokens_packed": int(packed_tokens),
                "tokens_naive": int(naive_tokens),
                "sampled_tokens": int(sampled_tokens),
                "pack_ratio": naive_tokens / packed_tokens if packed_tokens else 1.0,
                "tokens_per_s": packed_tokens / max(elapsed - collected.seconds, 1e-9),
                "sample_time_s": collected.seconds,
                "step_time_s": elapsed,
                "skipped_updates": sum(not u.finite for u in updates),
            }
        )
        return record

    # -- the loop --------------------------------------------------------------------------

    def train(self) -> TrainResult:
        config = self.config
        main = self.dist.is_main
        log = (
            MetricsLog(
                self.out / "metrics.jsonl",
                resume_step=self.start_step,
                tensorboard_dir=self.out / "tensorboard",
                wandb_project=config.wandb_project,
                run_name=self.out.name,
                config=msgspec.to_builtins(config),
            )
            if main
            else None
        )
        if main:
            (self.out / "train_config.json").write_bytes(
                msgspec.json.format(msgspec.json.encode(config))
            )
        bad_in_a_row = 0
        checkpoint = latest_checkpoint(self.out / "checkpoints") if main else None
        progress = _progress(self.progress and main, self.start_step, config.steps)
        try:
            for step in range(self.start_step, config.steps):
                record = self._step(step)
                if log is not None:
                    log.log(record)
                done = step + 1
                bad_in_a_row = bad_in_a_row + 1 if record["skipped_updates"] else 0
                if bad_in_a_row >= config.max_nonfinite_steps:
                    # Skipped updates left the weights as they were: this is the last good state.
                    checkpoint = self._checkpoint(done)
                    raise NonFiniteError(
                        f"{bad_in_a_row} steps in a row had a non-finite loss or gradient "
                        f"(last at step {done}); the last good state is saved in {checkpoint}. "
                        "Lower the learning rate or use fp32."
                    )
                if done == config.steps or (
                    config.checkpoint_every and done % config.checkpoint_every == 0
                ):
                    checkpoint = self._checkpoint(done)
                progress.update(record)
        finally:
            progress.close()
            if log is not None:
                log.close()
        metrics = read_metrics(self.out / "metrics.jsonl") if main else []
        if main and metrics:
            plot_curves(
                metrics,
                ["reward", "loss", "kl", "entropy", "pack_ratio"],
                self.out / "training_curves.png",
                title=f"swirl train ({config.mode})",
            )
        dd.close_distributed(self.dist)
        return TrainResult(self.out, checkpoint, config.steps, metrics)

    def _checkpoint(self, step: int) -> Path:
        model_state, optimizer_state = dd.full_state_dicts(self.policy, self.optimizer, self.dist)
        model_state = {k.removeprefix("model."): v for k, v in model_state.items()}
        path = self.out / "checkpoints" / f"step-{step:06d}"
        if self.dist.is_main:
            path = save_checkpoint(
                self.out / "checkpoints",
                step=step,
                model=self.model,
                tokenizer=self.tokenizer,
                model_state=model_state,
                optimizer_state=optimizer_state,
                scheduler=self.scheduler,
                state={"data_position": self.stream.position, "mode": self.config.mode},
                keep_last=self.config.keep_checkpoints,
            )
        dd.barrier(self.dist)
        return path


class _progress:
    """A rich progress bar over optimizer steps showing loss and reward (no-op when disabled)."""

    def __init__(self, enabled: bool, start: int, total: int) -> None:
        self.bar = None
        if not enabled:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
        )
        self.task = self.bar.add_task("train", total=total, completed=start, info="")
        self.bar.start()

    def update(self, record: dict[str, Any]) -> None:
        if self.bar is None:
            return
        parts = [
            f"{k}={record[k]:.3g}" for k in ("loss", "reward", "kl") if record.get(k) is not None
        ]
        self.bar.update(self.task, advance=1, info=" ".join(parts))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
