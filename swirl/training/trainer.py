"""The SWiRL Stage-2 trainer: step-wise policy gradient over prefix-shared packed batches.

Each optimizer step draws states (prefixes ``s_i`` of filtered trajectories), gets actions for
them (sampled by the live policy and judged, or the recorded ones), turns rewards into per-state
baselined advantages, packs every state and action of the step as token trees (a trajectory's
states share one context), and runs the fused policy loss row group by row group.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
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

from swirl.backends.base import GenerationBackend
from swirl.backends.serving import ServerRollout
from swirl.jsonl import read_jsonl
from swirl.judge.base import Judge
from swirl.packing import PackedBatch, pack
from swirl.prompts import TEMPLATES
from swirl.schema import Example, Trajectory
from swirl.settings import (
    JudgeSettings,
    RolloutSettings,
    ToolSettings,
    differing_fields,
    read_settings,
)
from swirl.training import distributed as dd
from swirl.training.advantages import (
    Baseline,
    group_advantages,
    informative_groups,
    penalised_rewards,
    resolve_baseline,
)
from swirl.training.checkpoint import latest_checkpoint, load_trainer_state, save_checkpoint
from swirl.training.config import ROLLOUT_MODES, SAMPLED_MODES, TrainConfig
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
from swirl.training.sources import ActionScorer, ActionSource, RecordedActions, SampledActions
from swirl.training.states import State, StateStream, training_states
from swirl.training.trees import ActionSample, build_sequences

log = logging.getLogger(__name__)


# Nats per sampled token between a rollout server's log-probs and the learner's above which the
# two compute different distributions (fp32 vLLM and torch agree to about 1e-4).
MAX_UNCORRECTED_SAMPLER_GAP = 0.05


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
    """One rank's actions of a step. Over ``scored`` (the samples whose reward is known, in
    order): ``rewards``, ``groups`` (baseline group ids), ``informative`` (the group's rewards
    differ) and ``advantages`` are ``[S]``. ``oversize``: samples dropped because an action with
    its state does not fit a packed row; ``seconds``: wall time of sampling and judging (a weight
    sync included); ``policy_version``: the optimizer updates behind the sampler's weights;
    ``sync_seconds``: what a rollout server's weight sync before sampling took."""

    states: list[State]
    samples: list[ActionSample]
    scored: list[ActionSample]
    rewards: torch.Tensor
    groups: torch.Tensor
    informative: torch.Tensor
    advantages: torch.Tensor
    oversize: int
    seconds: float
    policy_version: int = 0
    sync_seconds: float = 0.0

    @property
    def sampled_tokens(self) -> int:
        """Tokens of all the step's actions."""
        return sum(sample.num_tokens for sample in self.samples)


@dataclass(frozen=True)
class Packed:
    """One rank's packed batch and its forward passes (padded to the most any rank runs).

    ``counted``: indices into ``Collected.scored`` of the samples in the loss and its averages;
    ``sample``: ``[M]`` int64, the index into ``scored`` of each target's sample (only counted
    samples with something to learn are packed); ``advantages`` and ``scale`` (the final loss
    weight, :func:`target_loss_scale`) and ``behavior_logp`` (the sampler's log-probs, None when
    the sampler gave none) are ``[M]`` in the batch's target order."""

    batch: PackedBatch
    passes: list[MicroBatch]
    counted: list[int]
    sample: torch.Tensor
    advantages: torch.Tensor
    scale: torch.Tensor
    behavior_logp: torch.Tensor | None


@dataclass(frozen=True)
class Update:
    """What :meth:`Trainer._update` did: each optimizer update's statistics (this rank's sums)
    and gradient norm, and the advantage of every scored sample (``[S]``; with
    ``kl_in_reward`` the penalised ones). ``no_gradient``: the loss had no gradient anywhere
    (every advantage 0, no KL or entropy term), so no update ran."""

    updates: list[UpdateStats]
    norms: list[float]
    advantages: torch.Tensor
    no_gradient: bool = False


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
        if config.mode in ROLLOUT_MODES:
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
        self.resources = contextlib.ExitStack()
        self.rollout: ServerRollout | None = None
        self.synced_version: int | None = None
        try:
            self.source = self._action_source(judge)
        except BaseException:
            self.close()
            raise
        self.loss_options = {
            "clip_low": config.clip_low,
            "clip_high": config.clip_high,
            # kl_in_reward puts the penalty in the advantages; the reference's log-probs still
            # give the logged KL statistic
            "kl_coef": 0.0 if config.kl_in_reward else config.kl_coef,
            "kl_estimator": config.kl_estimator,
            "kl_clamp": config.kl_clamp,
            "entropy_coef": config.entropy_coef,
            "tis_cap": config.tis_cap,
        }
        self.loss_divisor = self._token_budget()

    def _token_budget(self) -> float:
        """The most tokens one step's samples can hold (``normalize = "constant"``'s divisor):
        states x samples per state x tokens per sample (a whole rollout in outcome mode)."""
        config = self.config
        per_action = config.max_new_tokens or stage1_turn_budget(self.trajectories)
        if config.mode in ROLLOUT_MODES:
            assert config.rollout is not None
            steps = config.rollout.max_steps or max(
                TEMPLATES[t.task].default_max_steps for t in self.trajectories
            )
            per_action *= steps
        samples = config.samples_per_state if config.mode in SAMPLED_MODES else 1
        return float(config.states_per_step * samples * per_action)

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

    def _sampling_backend(self) -> GenerationBackend:
        """The engine that samples the policy's actions: this process's, or a vLLM server
        (started here unless the user runs it) that :meth:`_sync_sampler` keeps current."""
        config = self.config
        if not config.serving.remote:
            from swirl.backends.hf import HFBackend

            return HFBackend(self.sampler, self.tokenizer)
        from swirl.backends.serving import vllm_rollout
        from swirl.model import resolve_model

        self.rollout = self.resources.enter_context(
            vllm_rollout(
                config.serving,
                model_dir=resolve_model(config.model),
                tokenizer=self.tokenizer,
                work_dir=self.out / "rollout",
                lora_rank=config.lora.rank if config.lora is not None else None,
                policy=self.sampler,
                max_concurrency=config.states_per_step * config.samples_per_state,
            )
        )
        return self.rollout.backend

    def _sync_sampler(self) -> tuple[int, float]:
        """Send the policy's weights to the rollout server when they changed since its last
        sync (always before its first sampling: it may serve a checkpoint's predecessor).
        Returns the policy version (optimizer updates applied) and the seconds the sync took."""
        version = int(self.scheduler.last_epoch)
        if self.rollout is None or version == self.synced_version:
            return version, 0.0
        seconds = self.rollout.weights.sync(self.sampler, version) if self.dist.is_main else 0.0
        dd.barrier(self.dist)
        self.synced_version = version
        return version, seconds

    def _check_sampler(self, record: dict[str, Any]) -> None:
        """A rollout server must sample the distribution the learner scores, or the loss needs
        its importance correction: refuse a measured gap that tis_cap does not correct."""
        gap = record.get("sampler_abs_gap")
        if self.rollout is None or gap is None or self.config.tis_cap is not None:
            return
        if gap > MAX_UNCORRECTED_SAMPLER_GAP:
            raise ValueError(
                f"step {record['step']}: the rollout server's log-probs differ from the "
                f"learner's by {gap:.3f} nats per token (an fp32 vLLM server started by swirl "
                f"agrees to about 1e-4): a server with another dtype, pre-temperature log-probs "
                "(start it with --logprobs-mode processed_logprobs) or other weights samples "
                "another distribution; set tis_cap to train on it anyway"
            )

    def close(self) -> None:
        """Stop what the trainer started (a rollout server); :meth:`train` calls it at the end."""
        self.resources.close()

    def _action_source(self, judge: Judge | None) -> ActionSource:
        config = self.config
        if config.mode == "sft":
            return RecordedActions("one")
        if config.mode == "offline":
            return RecordedActions("label")
        from swirl.backends.base import SamplingParams
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
        backend = self._sampling_backend()
        judge = judge or load_judge(config.judge)
        if config.mode in ROLLOUT_MODES:
            from swirl.env import EnvConfig
            from swirl.training.outcome import OutcomeRollouts

            return OutcomeRollouts(
                backend,
                judge,
                reward="process" if config.mode == "trajectory-process" else "outcome",
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
        scorer: ActionScorer
        if config.mode == "stepwise-outcome":
            from swirl.env import EnvConfig
            from swirl.training.completions import CompletedOutcomeScorer

            scorer = CompletedOutcomeScorer(
                judge,
                backend,
                examples=self.examples,
                tools=tools,
                params=params,
                env=EnvConfig.from_settings(
                    config.rollout,
                    config.tools,
                    max_live_episodes=config.states_per_step * config.samples_per_state,
                ),
                seed=config.seed,
            )
        else:
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

    def _all_reduce_max(self, values: list[float]) -> list[float]:
        return dd.all_reduce_max(values, self.dist)

    def _rank_states(self) -> tuple[list, list[int]]:
        """This rank's share of the step's ``states_per_step`` states (questions in outcome mode)
        and how often each was drawn before it in the step (counted over all ranks' draws)."""
        states = self.stream.take(self.config.states_per_step)
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
        version, sync_seconds = self._sync_sampler()
        samples = self.source.samples(states, step, occurrences)
        fitting = [s for s in samples if s.fits(self.config.tokens_per_micro_batch)]
        scored = [s for s in fitting if s.reward is not None]
        rewards = torch.tensor([s.reward for s in scored], dtype=torch.float32)
        groups = torch.tensor([s.group for s in scored], dtype=torch.long)
        informative = informative_groups(
            rewards, groups, baseline=self.baseline, all_reduce_max=self._all_reduce_max
        )
        advantages = group_advantages(
            rewards,
            groups,
            baseline=self.baseline,
            scale_by_std=self.config.scale_by_std,
            all_reduce=self._all_reduce,
        )
        return Collected(
            states,
            samples,
            scored,
            rewards,
            groups,
            informative,
            advantages,
            len(samples) - len(fitting),
            time.perf_counter() - started,
            version,
            sync_seconds,
        )

    @property
    def _loss_has_kl_term(self) -> bool:
        return self.config.kl_coef > 0 and not self.config.kl_in_reward

    def _pack(self, collected: Collected) -> Packed:
        """Pack this rank's counted samples that can change the loss, pad its passes to the most
        any rank needs, and give every target its final loss weight from the totals over all
        ranks (so zero-advantage samples that stay counted still weigh in the averages)."""
        config = self.config
        naive = config.layout == "naive"
        drop = config.drop_zero_variance_groups
        counted = [i for i in range(len(collected.scored)) if collected.informative[i] or not drop]
        # Without a KL or entropy term (and before kl_in_reward moves the advantages), a sample
        # with advantage 0 adds nothing to the loss or its gradient: it is counted, not packed.
        if self._loss_has_kl_term or config.entropy_coef > 0 or config.kl_in_reward:
            packed = counted
        else:
            packed = [i for i in counted if collected.advantages[i] != 0]
        trees = build_sequences(
            [collected.scored[i] for i in packed],
            share=not naive,
            max_tokens=config.tokens_per_micro_batch,
        )
        batch = pack(
            trees.sequences,
            config.tokens_per_micro_batch,
            share_prefixes=not naive,
            vocab_size=self.vocab_size,
            pad_id=self.pad_id,
        )
        sample = torch.as_tensor(
            np.asarray(packed, dtype=np.int64)[trees.branch_sample[batch.target_branch]]
        )
        lengths = torch.tensor([s.num_tokens for s in collected.scored], dtype=torch.float32)
        total_targets, total_sequences = self._all_reduce(
            [float(lengths[counted].sum()), float(len(counted))]
        )
        rows = row_passes(batch)
        count, missing_behavior = self._all_reduce_max(
            [float(len(rows)), float(trees.behavior_logp is None)]
        )
        passes = pad_passes(rows, int(count), pad_id=self.pad_id)
        scale = target_loss_scale(
            lengths[sample],
            config.normalize,
            total_targets=max(total_targets, 1.0),
            total_sequences=max(total_sequences, 1.0),
            divisor=self.loss_divisor,
            world_size=self.dist.world_size,
        )
        behavior = None if missing_behavior else torch.from_numpy(trees.behavior_logp)
        if config.tis_cap is not None and behavior is None:
            raise ValueError(
                "tis_cap needs the sampler's log-probs, and the sampling backend returned none"
            )
        return Packed(batch, passes, counted, sample, collected.advantages[sample], scale, behavior)

    def _update(self, collected: Collected, packed: Packed) -> Update:
        """``updates_per_batch`` optimizer updates on the packed batch. An update whose loss or
        gradient is not finite on any rank is skipped on every rank (``finite`` False); a batch
        whose loss has no gradient on any rank runs no update at all (AdamW's momentum and
        weight decay would still move the weights)."""
        config = self.config
        passes = packed.passes
        advantages = collected.advantages
        if not passes:  # no rank has an action to train on
            return Update([], [], advantages, no_gradient=True)
        ref_logp = packed_logprobs(self.reference, passes) if self.reference is not None else None
        needs_old = config.updates_per_batch > 1 or config.kl_in_reward
        old_logp = packed_logprobs(self.policy, passes) if needs_old else None
        inputs_finite = all(
            bool(torch.isfinite(v).all()) for v in (ref_logp, old_logp) if v is not None
        )
        (bad_inputs,) = dd.all_reduce_max([float(not inputs_finite)], self.dist)
        if bad_inputs:
            self.optimizer.zero_grad(set_to_none=True)
            return Update(
                [UpdateStats(finite=False)] * config.updates_per_batch, [math.nan], advantages
            )
        target_advantages = packed.advantages
        if config.kl_in_reward:
            assert old_logp is not None and ref_logp is not None
            advantages = self._kl_folded_advantages(collected, packed, old_logp, ref_logp)
            target_advantages = advantages[packed.sample]
        has_gradient = bool(target_advantages.any()) or self._loss_has_kl_term
        (has_gradient,) = self._all_reduce_max([float(has_gradient or config.entropy_coef > 0)])
        if not has_gradient:
            return Update([], [], advantages, no_gradient=True)
        updates, norms = [], []
        for _ in range(config.updates_per_batch):
            self.optimizer.zero_grad(set_to_none=True)
            stats = accumulate_policy_gradient(
                self.policy,
                passes,
                packed.scale,
                target_advantages,
                old_logp=old_logp if config.updates_per_batch > 1 else None,
                ref_logp=ref_logp if self._loss_has_kl_term else None,
                behavior_logp=packed.behavior_logp,
                options=self.loss_options,
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
        return Update(updates, norms, advantages)

    def _kl_folded_advantages(
        self, collected: Collected, packed: Packed, old_logp: torch.Tensor, ref_logp: torch.Tensor
    ) -> torch.Tensor:
        """``[S]`` advantages of the counted samples from their rewards with the k1 penalty
        folded in (``kl_in_reward``; every counted sample is packed), 0 for the others."""
        counted = torch.tensor(packed.counted, dtype=torch.long)
        real = torch.cat([torch.from_numpy(p.indices) for p in packed.passes if not p.is_padding])
        rewards = penalised_rewards(
            collected.rewards,
            packed.sample[real],
            old_logp[real],
            ref_logp[real],
            self.config.kl_coef,
        )
        out = torch.zeros_like(collected.rewards)
        out[counted] = group_advantages(
            rewards[counted],
            collected.groups[counted],
            baseline=self.baseline,
            scale_by_std=self.config.scale_by_std,
            all_reduce=self._all_reduce,
        )
        return out

    def _step(self, step: int) -> dict[str, Any]:
        started = time.perf_counter()
        collected = self._collect(step)
        packed = self._pack(collected)
        update = self._update(collected, packed)
        return self._record(step, collected, packed, update, started)

    def _record(
        self,
        step: int,
        collected: Collected,
        packed: Packed,
        update: Update,
        started: float,
    ) -> dict[str, Any]:
        """The step's metrics over all ranks; every key is defined in :data:`METRICS`."""
        config = self.config
        updates = update.updates
        advantages = update.advantages
        groups = torch.unique(collected.groups)
        informative = torch.unique(collected.groups[collected.informative])
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
            float(collected.sampled_tokens if config.mode in SAMPLED_MODES else 0),
            float(groups.numel()),
            float(informative.numel()),
            float(collected.oversize),
        ]
        fields = [f.name for f in dataclasses.fields(UpdateStats) if f.name != "finite"]
        for stats in updates:
            local += [float(getattr(stats, name)) for name in fields]
        reduced = self._all_reduce(local)
        reward_sum, advantage_sum, advantage_square, advantage_abs, scored = reduced[:5]
        states, actions, packed_tokens, naive_tokens, sampled_tokens = reduced[5:10]
        group_count, informative_count, oversize = reduced[10:13]
        per_update = [
            dict(
                zip(fields, reduced[13 + i * len(fields) : 13 + (i + 1) * len(fields)], strict=True)
            )
            for i in range(len(updates))
        ]
        elapsed = time.perf_counter() - started
        record: dict[str, Any] = {"step": step + 1}
        record.update(
            dict.fromkeys(("reward", "advantage_mean", "advantage_std", "informative_frac", "loss"))
        )
        record.update(dict.fromkeys(("logp_mean", "entropy", "ratio_mean", "clip_frac")))
        if config.mode in SAMPLED_MODES:
            record.update(dict.fromkeys(("kl", "sampler_gap", "sampler_abs_gap")))
        if scored and config.mode != "sft":  # SFT: every recorded action weighs 1, no reward
            mean = advantage_sum / scored
            record["reward"] = reward_sum / scored
            record["advantage_mean"] = mean
            record["advantage_std"] = math.sqrt(max(advantage_square / scored - mean * mean, 0.0))
            record["informative_frac"] = informative_count / group_count if group_count else None
            if advantage_abs == 0:
                log.warning(
                    "step %d: every advantage is 0 (the rewards are equal within each baseline "
                    "group), so only a KL or entropy term trains",
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
                record["kl"] = first["kl"] / count
            if packed.behavior_logp is not None:
                record["sampler_gap"] = first["sampler_gap"] / count
                record["sampler_abs_gap"] = first["sampler_abs_gap"] / count
                if config.tis_cap is not None:
                    record["tis_capped_frac"] = first["tis_capped"] / count
        if config.updates_per_batch > 1 and finite:
            count = sum(u["targets"] for u in finite) or 1
            record["ratio_mean"] = sum(u["ratio"] for u in finite) / count
            if config.clip_low is not None:
                record["clip_frac"] = sum(u["clipped"] for u in finite) / count
                for sign in ("pos", "neg"):
                    total = sum(u[f"targets_{sign}"] for u in finite)
                    cut = sum(u[f"clipped_{sign}"] for u in finite)
                    record[f"clip_frac_{sign}"] = cut / total if total else None
        record.update(
            {
                "grad_norm": update.norms[0] if update.norms else None,
                "lr": self.scheduler.get_last_lr()[0],
                "states": int(states),
                "actions": int(actions),
                "unscored": int(actions - oversize - scored),
                "oversize_dropped": int(oversize),
                "tokens_packed": int(packed_tokens),
                "tokens_naive": int(naive_tokens),
                "sampled_tokens": int(sampled_tokens),
                "pack_ratio": naive_tokens / packed_tokens if packed_tokens else 1.0,
                "tokens_per_s": packed_tokens / max(elapsed - collected.seconds, 1e-9),
                "sample_time_s": collected.seconds,
                "step_time_s": elapsed,
                "skipped_updates": sum(not u.finite for u in updates),
                "no_gradient": int(update.no_gradient),
                "policy_version": collected.policy_version,
                "weight_sync_s": collected.sync_seconds,
            }
        )
        if oversize:
            log.warning(
                "step %d: %d sample(s) dropped: an action with its state is longer than "
                "tokens_per_micro_batch (%d)",
                step + 1,
                int(oversize),
                config.tokens_per_micro_batch,
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
                self._check_sampler(record)
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
            self.close()
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
