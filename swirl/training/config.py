"""Training configuration: one msgspec Struct, loadable from TOML, overridable by CLI flags.

Each field's description is its ``swirl train --FLAG`` help (see :mod:`swirl.flags`). Fields
left None are taken from what was recorded with the trajectories (:mod:`swirl.settings`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from swirl.backends.serving import ServingSettings
from swirl.config_files import load_struct
from swirl.ops.loss import KLEstimator
from swirl.settings import JudgeSettings, RolloutSettings, ToolSettings
from swirl.training.advantages import Baseline, degenerate_baseline, resolve_baseline
from swirl.training.schedule import Schedule

Mode = Literal["online", "offline", "sft", "outcome", "stepwise-outcome", "trajectory-process"]
Aggregation = Literal["token", "sequence", "constant"]
# actions sampled from the live policy while training
SAMPLED_MODES = ("online", "outcome", "stepwise-outcome", "trajectory-process")
# whole trajectories rolled out per question (the rest sample one action per recorded state)
ROLLOUT_MODES = ("outcome", "trajectory-process")


class LoraSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """LoRA through PEFT (optional dependency)."""

    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.0
    target_modules: list[str] = msgspec.field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"]
    )


class TrainConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Everything ``swirl train`` needs. Units: steps are optimizer steps; tokens are token ids."""

    trajectories: Annotated[
        str, Meta(description="filtered trajectories JSONL (labelled, for offline mode)")
    ] = ""
    out: Annotated[str, Meta(description="run directory: checkpoints/, metrics.jsonl, plots")] = ""
    data: Annotated[
        str | None,
        Meta(
            description="dataset of the trajectories' questions (gold annotations for the judge); "
            "default: the one recorded with the trajectories"
        ),
    ] = None
    data_format: Annotated[
        str | None, Meta(description="format of --data when not detected (default: recorded)")
    ] = None
    data_split: Annotated[
        str | None, Meta(description="split of --data (default: recorded, else train)")
    ] = None
    data_seed: Annotated[
        int | None,
        Meta(description="seed the built-in demo questions were drawn with (default: recorded)"),
    ] = None
    mode: Annotated[
        Mode,
        Meta(
            description="online: sample G actions per state, judge each step (SWiRL); offline: "
            "recorded actions, stored process labels as rewards; sft: likelihood of recorded "
            "actions; outcome: G whole rollouts per question, one reward per trajectory from its "
            "judged answer (outcome-level, 'single-step' RL); stepwise-outcome: G actions per "
            "state as online, each completed to an answer by the current policy and rewarded by "
            "that answer's outcome (the step is trained, not its completion); "
            "trajectory-process: G whole rollouts per question as outcome, each rewarded by its "
            "mean process label"
        ),
    ] = "online"
    model: Annotated[
        str | None, Meta(description="initial policy, HF name or path (default: embedded SmolLM2)")
    ] = None
    judge: JudgeSettings | None = None  # None: recorded with the trajectories, else the defaults
    tools: ToolSettings | None = None  # None: recorded with the trajectories, else the defaults
    # outcome mode's step cap and few-shot prompt (TOML only; None: recorded, else the defaults)
    rollout: RolloutSettings | None = None
    steps: Annotated[int, Meta(description="optimizer steps")] = 20
    states_per_step: Annotated[
        int,
        Meta(
            description="states drawn per step, in total over all data-parallel ranks (outcome "
            "mode: questions)"
        ),
    ] = 8
    samples_per_state: Annotated[
        int,
        Meta(
            description="G, the baseline's group: actions sampled per state (online) or "
            "rollouts per question (outcome)"
        ),
    ] = 4
    temperature: Annotated[
        float,
        Meta(description="online sampling temperature (> 0); the loss divides the logits by it"),
    ] = 1.0
    top_p: Annotated[
        float,
        Meta(
            description="nucleus sampling; sampled modes (online, outcome) refuse < 1, since the "
            "loss scores the untruncated distribution"
        ),
    ] = 1.0
    max_new_tokens: Annotated[
        int | None,
        Meta(description="online: tokens per sampled action (default: the Stage-1 turn budget)"),
    ] = None
    baseline: Annotated[
        Baseline | None,
        Meta(
            description="group_mean (GRPO) | rloo | batch_mean | none (default: group_mean "
            "online, batch_mean offline, none for SFT)"
        ),
    ] = None
    scale_by_std: Annotated[
        bool, Meta(description="divide advantages by their group's (or batch's) std")
    ] = False
    drop_zero_variance_groups: Annotated[
        bool,
        Meta(
            description="leave out of the loss and its averages every baseline group whose "
            "rewards are all equal (DAPO's dynamic-sampling filter, without resampling): their "
            "advantages are 0, so they only shrink a token or sequence mean"
        ),
    ] = False
    clip_low: Annotated[
        float | None,
        Meta(
            description="PPO ratio clip: the ratio is kept above 1 - clip_low (bites with "
            "updates_per_batch > 1)"
        ),
    ] = None
    clip_high: Annotated[
        float | None,
        Meta(
            description="PPO ratio clip: below 1 + clip_high (default: clip_low; larger is "
            "DAPO's clip-higher)"
        ),
    ] = None
    updates_per_batch: Annotated[int, Meta(description="optimizer updates per sampled batch")] = 1
    kl_coef: Annotated[
        float,
        Meta(
            description="weight of the KL penalty to the frozen initial policy (sampled modes "
            "only: recorded actions were not drawn from the policy, so no estimator applies)"
        ),
    ] = 0.0
    kl_estimator: Annotated[
        KLEstimator,
        Meta(
            description="KL penalty term on the sampled tokens, d = log p - log p_ref: k3 = "
            "exp(-d) + d - 1 (GRPO's; its gradient is that of KL(ref || policy)), k2 = d^2 / 2 "
            "(gradient of KL(policy || ref)), k1 = d (zero expected gradient as a loss term: "
            "use it with kl_in_reward)"
        ),
    ] = "k3"
    kl_clamp: Annotated[
        float | None,
        Meta(description="clamp d to [-kl_clamp, kl_clamp] in the KL term (bounds exp(-d))"),
    ] = 10.0
    kl_in_reward: Annotated[
        bool,
        Meta(
            description="fold the k1 penalty into each action's reward (r - kl_coef * sum of "
            "d over its tokens, before the baseline), as in PPO-style RLHF, instead of a loss "
            "term: then the gradient is that of the sequence-level KL(policy || ref)"
        ),
    ] = False
    entropy_coef: Annotated[
        float, Meta(description="entropy bonus: minus this times the mean next-token entropy")
    ] = 0.0
    tis_cap: Annotated[
        float | None,
        Meta(
            description="truncated importance sampling: weight each sampled token's policy "
            "gradient by min(p_learner / p_sampler, tis_cap), correcting a sampler that differs "
            "from the learner (another engine, bf16)"
        ),
    ] = None
    normalize: Annotated[
        Aggregation,
        Meta(
            description="what the loss averages over: token (every token of the step), "
            "sequence (each sampled action's token mean, then the mean over actions; outcome "
            "mode: each trajectory's), constant (the token sum divided by the step's token "
            "budget, states x samples x tokens per sample: Dr. GRPO's)"
        ),
    ] = "token"
    lr: Annotated[float, Meta(description="peak learning rate (AdamW)")] = 1e-5
    weight_decay: Annotated[float, Meta(description="AdamW weight decay")] = 0.0
    warmup_steps: Annotated[int, Meta(description="linear warmup, in optimizer updates")] = 0
    schedule: Annotated[Schedule, Meta(description="learning-rate schedule after warmup")] = (
        "constant"
    )
    max_grad_norm: Annotated[float, Meta(description="gradient clipping norm")] = 1.0
    tokens_per_micro_batch: Annotated[
        int,
        Meta(description="packed row length in tokens; a step accumulates gradients over rows"),
    ] = 4096
    layout: Annotated[
        Literal["tree", "naive"],
        Meta(
            description="tree: states and actions share prefixes (fast); naive: every action "
            "with its own full state (to measure what the tree saves)"
        ),
    ] = "tree"
    dtype: Annotated[
        Literal["fp32", "bf16"],
        Meta(description="bf16: autocast forward; weights and optimizer stay fp32"),
    ] = "fp32"
    gradient_checkpointing: Annotated[
        bool, Meta(description="recompute activations in backward (less memory, more time)")
    ] = False
    lora: LoraSettings | None = None
    serving: ServingSettings = msgspec.field(default_factory=ServingSettings)
    checkpoint_every: Annotated[
        int, Meta(description="save a checkpoint every N steps (0: only at the end)")
    ] = 0
    keep_checkpoints: Annotated[int, Meta(description="checkpoints kept on disk")] = 2
    max_nonfinite_steps: Annotated[
        int, Meta(description="stop after this many steps in a row with a non-finite update")
    ] = 3
    seed: Annotated[int, Meta(description="seed of state order, sampling and init")] = 0
    device: Annotated[str, Meta(description="auto | cpu | cuda | cuda:N")] = "auto"
    wandb_project: Annotated[
        str | None, Meta(description="log to this Weights & Biases project")
    ] = None

    def __post_init__(self) -> None:
        positive = (
            "steps",
            "states_per_step",
            "samples_per_state",
            "max_new_tokens",
            "updates_per_batch",
            "tokens_per_micro_batch",
        )
        for name in positive:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"config field {name!r} must be >= 1, got {value}")
        if self.lr <= 0:
            raise ValueError(f"config field 'lr' must be > 0, got {self.lr}")
        if self.mode in SAMPLED_MODES and not self.temperature > 0:
            raise ValueError(
                f"config field 'temperature' must be > 0 in {self.mode} mode, got "
                f"{self.temperature}: "
                "greedy samples of one state are identical, so every advantage would be 0"
            )
        degenerate = degenerate_baseline(self.mode, self.baseline, self.samples_per_state)
        if degenerate is not None:
            raise ValueError(f"config field 'baseline': {degenerate}")
        for problem in self._objective_problems():
            raise ValueError(problem)

    def _objective_problems(self) -> list[str]:
        """Why the loss options cannot mean what they say in this mode (empty: they can)."""
        sampled = self.mode in SAMPLED_MODES
        problems = []
        if sampled and self.top_p < 1:
            problems.append(
                f"config field 'top_p' must be 1 in {self.mode} mode, got {self.top_p}: the loss "
                "scores the actions under the untruncated softmax, not the nucleus they were "
                "drawn from"
            )
        if not sampled and self.kl_coef > 0:
            problems.append(
                f"config field 'kl_coef' must be 0 in {self.mode} mode: the recorded actions were "
                "not sampled from the policy, so k1/k2/k3 on them estimate no KL (the exact "
                "full-vocabulary KL would need every state's logits)"
            )
        if self.kl_in_reward and not (sampled and self.kl_coef > 0):
            problems.append(
                "config field 'kl_in_reward' needs a sampled mode (online, outcome) and kl_coef > 0"
            )
        if self.serving.remote and not sampled:
            problems.append(
                f"config field 'serving.engine' ({self.serving.engine}) is for sampled modes "
                f"(online, outcome): there is nothing to sample in {self.mode} mode"
            )
        if sampled and self.dtype == "bf16" and self.tis_cap is None:
            problems.append(
                "config field 'dtype' bf16 scores the actions in bf16 while the sampler drew them "
                "in fp32, from another distribution: set tis_cap to correct for it"
            )
        if self.tis_cap is not None and not sampled:
            problems.append(
                "config field 'tis_cap' is for sampled modes: recorded actions have no sampler "
                "log-probs"
            )
        if self.drop_zero_variance_groups and resolve_baseline(self.mode, self.baseline) == "none":
            problems.append(
                "config field 'drop_zero_variance_groups' needs a baseline: without one an "
                "action's advantage is its reward, so no group is uninformative"
            )
        if self.clip_high is not None and self.clip_low is None:
            problems.append("config field 'clip_high' needs clip_low")
        if self.clip_low is not None and not 0 < self.clip_low < 1:
            problems.append(f"config field 'clip_low' must be in (0, 1), got {self.clip_low}")
        for name in ("clip_high", "kl_clamp", "tis_cap"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                problems.append(f"config field {name!r} must be > 0, got {value}")
        for name in ("kl_coef", "entropy_coef"):
            if not getattr(self, name) >= 0:
                problems.append(f"config field {name!r} must be >= 0, got {getattr(self, name)}")
        return problems


def load_config(path: str | Path | None, **overrides: object) -> TrainConfig:
    """A TrainConfig from a TOML file (a ``[train]`` table or top-level keys; optional) with
    keyword overrides (None values ignored). Errors name the file and the offending field."""
    return load_struct(
        path,
        TrainConfig,
        overrides=overrides,
        select=lambda toml: dict(toml.get("train", toml)),
        what="training config",
    )
