"""``swirl train``: Stage 2, step-wise policy gradient on filtered trajectories (or SFT on them).

Every flag comes from a :class:`~swirl.training.config.TrainConfig` field (its description is
the help); the tool and judge flags change the settings recorded with the trajectories."""

from __future__ import annotations

import argparse

HELP = "train the policy on filtered trajectories: online SWiRL (default), offline, or SFT"
ROLLOUT_FLAG = {"engine": "--rollout"}  # ServingSettings.engine: where actions are sampled


def configure(parser: argparse.ArgumentParser) -> None:
    from swirl.flags import add_struct_flags
    from swirl.training.config import TrainConfig

    parser.add_argument(
        "--config", default=None, help="TOML file ([train] table or top-level keys)"
    )
    # lora is a nested table: TOML, or --lora/--lora-rank below; rollout (outcome mode's step cap
    # and few-shot prompt) is TOML only, its turn budget is --max-new-tokens
    add_struct_flags(parser, TrainConfig, skip={"lora", "rollout"}, flag_names=ROLLOUT_FLAG)
    parser.add_argument("--lora", action="store_true", help="train LoRA adapters (needs peft)")
    parser.add_argument("--lora-rank", type=int, default=None, help="LoRA rank (default 16)")
    parser.add_argument("--no-resume", action="store_true", help="ignore checkpoints in --out")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def config_from_args(args: argparse.Namespace):
    """The TrainConfig of a parsed command line (TOML file first, flags override). Tool and
    judge flags apply on top of the settings recorded with the trajectories."""
    import msgspec

    from swirl.backends.serving import ServingSettings
    from swirl.flags import given_values
    from swirl.settings import JudgeSettings, ToolSettings, read_settings, with_overrides
    from swirl.training.config import LoraSettings, TrainConfig, load_config

    overrides = given_values(args, TrainConfig)
    if args.lora or args.lora_rank is not None:
        overrides["lora"] = msgspec.to_builtins(LoraSettings(rank=args.lora_rank or 16))
    config = load_config(args.config, **overrides)
    serving = given_values(args, ServingSettings)
    if serving:
        config = msgspec.structs.replace(
            config, serving=with_overrides(config.serving, ServingSettings, serving)
        )
    recorded = read_settings(config.trajectories) if config.trajectories else None
    nested = {}
    for name, cls in (("judge", JudgeSettings), ("tools", ToolSettings)):
        given = given_values(args, cls)
        if given:
            base = getattr(config, name) or (getattr(recorded, name) if recorded else None)
            nested[name] = with_overrides(base, cls, given)
    return msgspec.structs.replace(config, **nested) if nested else config


def run(args: argparse.Namespace) -> int:
    from swirl.commands.rollout_options import apply_threads
    from swirl.training.trainer import Trainer

    apply_threads(args)

    config = config_from_args(args)
    result = Trainer(config, resume=not args.no_resume).train()
    if result.metrics:
        last = result.metrics[-1]
        print(
            f"trained {result.steps} steps ({config.mode}); last reward {last.get('reward')}, "
            f"loss {last.get('loss')}; checkpoint {result.checkpoint}; curves "
            f"{result.out / 'training_curves.png'}"
        )
    return 0
