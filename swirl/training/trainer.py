"""The SWiRL Stage-2 trainer: step-wise policy gradient over prefix-shared packed batches.

Each optimizer step draws states (prefixes ``s_i`` of filtered trajectories), gets actions for
them (sampled by the live policy and judged, or the recorded ones), turns rewards into per-state
baselined advantages, packs every state and action of the step as token trees (a trajectory's
states share one context), and runs the fused policy loss row group by row group.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import torch

from swirl.jsonl import read_jsonl
from swirl.judge.base import Judge
from swirl.packing import pack
from swirl.schema import Trajectory
from swirl.training import distributed as dd
from swirl.training.advantages import Baseline, group_advantages
from swirl.training.checkpoint import latest_checkpoint, load_trainer_state, save_checkpoint
from swirl.training.config import TrainConfig
from swirl.training.metrics_log import MetricsLog, read_metrics
from swirl.training.objective import (
    PackedPolicy,
    UpdateStats,
    accumulate_policy_gradient,
    packed_logprobs,
)
from swirl.training.plots import plot_curves
from swirl.training.schedule import make_scheduler
from swirl.training.sources import ActionSource, RecordedActions, SampledActions
from swirl.training.states import StateStream, training_states
from swirl.training.trees import build_sequences

DEFAULT_BASELINE: dict[str, Baseline] = {
    "online": "group_mean",
    "offline": "batch_mean",
    "sft": "none",
}


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
        self.config = config
        self.out = Path(config.out)
        self.progress = progress
        self.device = resolve_device(config.device)
        self.dist = dd.init_distributed(self.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.rank % torch.cuda.device_count())
        torch.manual_seed(config.seed)

        self.trajectories = read_jsonl(config.trajectories, Trajectory)
        states = training_states(self.trajectories)
        if config.mode == "offline":
            states = [s for s in states if s.process is not None and s.process.verdict is not None]
            if not states:
                raise ValueError(
                    f"{config.trajectories}: no step carries a process label; run `swirl judge` "
                    "first (offline mode trains on the stored labels)"
                )
        checkpoint = latest_checkpoint(self.out / "checkpoints") if resume else None
        self.start_step = 0
        position = 0
        if checkpoint is not None:
            saved = msgspec.json.decode((checkpoint / "state.json").read_bytes())
            self.start_step, position = int(saved["step"]), int(saved["data_position"])
        self.stream = StateStream(states, seed=config.seed, position=position)

        self.model, self.tokenizer = self._load_policy(checkpoint)
        self.vocab_size = int(self.model.config.vocab_size)
        # Data-parallel ranks sample from a full (unsharded) copy, refreshed after each step, so
        # generation runs without collectives however many forward passes each rank needs.
        self.sampler = (
            copy.deepcopy(self.model)
            if self.dist.enabled and config.mode == "online"
            else self.model
        )
        autocast = torch.bfloat16 if config.dtype == "bf16" else None
        self.policy = dd.shard_policy(PackedPolicy(self.model, autocast=autocast), self.dist)
        self.reference = (
            PackedPolicy(self._initial_policy(), autocast=autocast) if config.kl_coef > 0 else None
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
        self.baseline: Baseline = (
            DEFAULT_BASELINE[config.mode] if config.baseline is None else config.baseline
        )

    # -- setup -----------------------------------------------------------------------------

    def _load_policy(self, checkpoint: Path | None) -> tuple[torch.nn.Module, Any]:
        from swirl.model import load_model

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

    def _action_source(self, judge: Judge | None) -> ActionSource:
        config = self.config
        if config.mode == "sft":
            return RecordedActions("one")
        if config.mode == "offline":
            return RecordedActions("label")
        from swirl.backends.base import SamplingParams
        from swirl.backends.hf import HFBackend
        from swirl.data import load_examples
        from swirl.judge.loading import judge_from_spec
        from swirl.tools.factory import tools_for_examples
        from swirl.training.rewards import StepScorer

        examples = {
            e.id: e
            for e in load_examples(config.data, split=config.data_split, seed=config.data_seed)
        }
        scorer = StepScorer(
            judge or judge_from_spec(config.judge),
            examples=examples,
            trajectories={t.id: t for t in self.trajectories},
            tools=tools_for_examples(list(examples.values()), config.data, split=config.data_split),
            tokenizer=self.tokenizer,
        )
        params = SamplingParams(
            max_new_tokens=config.max_new_tokens, temperature=config.temperature, top_p=config.top_p
        )
        return SampledActions(
            HFBackend(self.sampler, self.tokenizer),
            scorer,
            samples_per_state=config.samples_per_state,
            params=params,
            seed=config.seed,
        )

    # -- one step --------------------------------------------------------------------------

    def _rank_states(self) -> list:
        """This rank's share of the step's states (every rank advances the stream alike)."""
        states = self.stream.take(self.config.states_per_step * self.dist.world_size)
        return states[self.dist.rank :: self.dist.world_size]

    def _step(self, step: int) -> dict[str, Any]:
        config = self.config
        started = time.perf_counter()
        states = self._rank_states()
        if self.sampler is not self.model:
            dd.refresh_full_copy(self.policy, self.sampler, prefix="model.")
        samples = self.source.samples(states, step)
        sampled_at = time.perf_counter()
        scored = [s for s in samples if s.reward is not None]
        rewards = torch.tensor([s.reward for s in scored], dtype=torch.float32)
        groups = torch.tensor([s.group for s in scored], dtype=torch.long)
        advantages = group_advantages(
            rewards, groups, baseline=self.baseline, scale_by_std=config.scale_by_std
        )
        naive = config.layout == "naive"
        sequences = build_sequences(scored, advantages.tolist(), share=not naive)
        batch = pack(
            sequences,
            config.tokens_per_micro_batch,
            share_prefixes=not naive,
            vocab_size=self.vocab_size,
            pad_id=self.tokenizer.pad_token_id or 0,
        )
        local = [float(batch.num_targets), float(batch.num_branches), 1.0]
        total_targets, total_branches, _ = dd.all_reduce_sum(local, self.dist)
        share = {
            "token": local[0] / max(total_targets, 1),
            "branch": local[1] / max(total_branches, 1),
        }
        loss_scale = self.dist.world_size * share.get(config.normalize, 1.0 / self.dist.world_size)
        ref_logp = packed_logprobs(self.reference, batch) if self.reference is not None else None
        old_logp = packed_logprobs(self.policy, batch) if config.updates_per_batch > 1 else None
        record: dict[str, Any] = {"step": step + 1}
        stats: UpdateStats | None = None
        skipped = 0
        for _ in range(config.updates_per_batch):
            self.optimizer.zero_grad(set_to_none=True)
            if batch.num_targets:
                stats = accumulate_policy_gradient(
                    self.policy,
                    batch,
                    normalize=config.normalize,
                    old_logp=old_logp,
                    ref_logp=ref_logp,
                    clip_eps=config.clip_eps,
                    kl_coef=config.kl_coef,
                    loss_scale=loss_scale,
                )
            grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, config.max_grad_norm)
            if hasattr(grad_norm, "full_tensor"):
                grad_norm = grad_norm.full_tensor()
            grad_norm = float(grad_norm)
            finite = math.isfinite(grad_norm) and (stats is None or math.isfinite(stats.loss))
            if not finite:
                self.optimizer.zero_grad(set_to_none=True)
                skipped += 1
                continue
            self.optimizer.step()
            self.scheduler.step()
        elapsed = time.perf_counter() - started
        record.update(
            self._global_stats(stats, rewards, advantages, local[0] / max(total_targets, 1))
        )
        record.update(
            {
                "grad_norm": grad_norm,
                "lr": self.scheduler.get_last_lr()[0],
                "states": len(states),
                "actions": len(samples),
                "unscored": len(samples) - len(scored),
                "tokens_packed": batch.packed_tokens,
                "tokens_naive": batch.naive_tokens,
                "pack_ratio": batch.ratio,
                "tokens_per_s": batch.packed_tokens / max(elapsed - (sampled_at - started), 1e-9),
                "sample_time_s": sampled_at - started,
                "step_time_s": elapsed,
                "skipped_updates": skipped,
            }
        )
        return record

    def _global_stats(
        self,
        stats: UpdateStats | None,
        rewards: torch.Tensor,
        advantages: torch.Tensor,
        target_share: float,
    ) -> dict[str, float | None]:
        """Loss and per-target means over all ranks (each rank weighted by its share of targets),
        reward and advantage statistics over all ranks' actions."""
        keys = ("loss", "logp_mean", "entropy", "kl", "clip_frac")
        values = [getattr(stats, k) if stats is not None else None for k in keys]
        weighted = [0.0 if v is None else v * target_share for v in values]
        moments = [float(rewards.sum()), float(advantages.pow(2).sum()), float(rewards.numel())]
        reduced = dd.all_reduce_sum(weighted + moments, self.dist)
        out: dict[str, float | None] = {
            key: None if value is None else total
            for key, value, total in zip(keys, values, reduced[: len(keys)], strict=True)
        }
        reward_sum, advantage_square, count = reduced[len(keys) :]
        # Advantages are centred per state, so their spread is their root mean square.
        out["reward"] = reward_sum / count if count else None
        out["advantage_std"] = math.sqrt(advantage_square / count) if count else None
        if self.config.mode == "sft":  # every recorded action weighs 1: there is no reward
            out["reward"] = out["advantage_std"] = None
        return out

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
