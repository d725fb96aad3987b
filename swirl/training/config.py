"""Training configuration: one msgspec Struct, loadable from TOML, overridable by CLI flags.

Each field's description is its ``swirl train --FLAG`` help (see :mod:`swirl.flags`). Fields
left None are taken from what was recorded with the trajectories (:mod:`swirl.settings`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from swirl.config_files import load_struct
from swirl.ops.validation import Normalize
from swirl.settings import JudgeSettings, RolloutSettings, ToolSettings
from swirl.training.advantages import Baseline, degenerate_baseline
from swirl.training.schedule import Schedule

Mode = Literal["online", "offline", "sft", "outcome"]
SAMPLED_MODES = ("online", "outcome")  # actions sampled from the live policy while training


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
            "judged answer (outcome-level, 'single-step' RL)"
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
        int, Meta(description="states drawn per step, all ranks (outcome mode: questions)")
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
    top_p: Annotated[float, Meta(description="online nucleus sampling")] = 1.0
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
    clip_eps: Annotated[
        float | None,
        Meta(description="PPO-style ratio clip range (bites with updates_per_batch > 1)"),
    ] = None
    updates_per_batch: Annotated[int, Meta(description="optimizer updates per sampled batch")] = 1
    kl_coef: Annotated[
        float, Meta(description="weight of the k3 KL penalty to the frozen initial policy")
    ] = 0.0
    normalize: Annotated[
        Normalize,
        Meta(
            description="loss reduction: token (mean over tokens), branch (mean over actions of "
            "their token means), sum"
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
