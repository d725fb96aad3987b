"""Training configuration: one msgspec Struct, loadable from TOML, overridable by CLI flags."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

from swirl.config_files import load_struct
from swirl.ops.validation import Normalize
from swirl.training.advantages import Baseline, degenerate_baseline
from swirl.training.schedule import Schedule

Mode = Literal["online", "offline", "sft"]


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

    trajectories: str  # filtered (and, for offline mode, labelled) trajectories JSONL
    out: str  # run directory: checkpoints/, metrics.jsonl, plots
    data: str = "demo-math"  # examples of the trajectories (gold annotations for the judge)
    data_split: str = "train"
    data_seed: int = (
        0  # the --seed the built-in demo questions were drawn with (swirl generate/run)
    )
    mode: Mode = "online"
    model: str | None = None  # None = the embedded SmolLM2-135M-Instruct
    judge: str = "reference"
    steps: int = 20
    states_per_step: int = 8
    samples_per_state: int = 4  # G, the group size of the per-state baseline
    temperature: float = 1.0  # online sampling; the loss divides the logits by it too
    top_p: float = 1.0
    max_new_tokens: int | None = None  # None: the Stage-1 turn budget the trajectories record
    # None: group_mean online (GRPO), batch_mean offline (one recorded action per state), none SFT
    baseline: Baseline | None = None
    scale_by_std: bool = False
    clip_eps: float | None = None  # PPO-style ratio clipping (needs updates_per_batch > 1 to bite)
    updates_per_batch: int = 1
    kl_coef: float = 0.0  # k3 KL to the frozen initial policy
    normalize: Normalize = "token"
    lr: float = 1e-5
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: Schedule = "constant"
    max_grad_norm: float = 1.0
    tokens_per_micro_batch: int = 4096  # packed row length; a step accumulates over rows
    # "tree": states and actions share prefixes (the fast path); "naive": every action with its own
    # full state, for measuring what the tree saves.
    layout: Literal["tree", "naive"] = "tree"
    dtype: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast forward, fp32 weights and optimizer
    gradient_checkpointing: bool = False
    lora: LoraSettings | None = None
    checkpoint_every: int = 0  # 0 = only at the end
    keep_checkpoints: int = 2
    max_nonfinite_steps: int = 3
    seed: int = 0
    device: str = "auto"
    wandb_project: str | None = None

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
        if self.mode == "online" and not self.temperature > 0:
            raise ValueError(
                f"config field 'temperature' must be > 0 in online mode, got {self.temperature}: "
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
