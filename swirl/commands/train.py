"""``swirl train``: Stage 2, step-wise policy gradient on filtered trajectories (or SFT on them)."""

from __future__ import annotations

import argparse
import types
import typing

HELP = "train the policy on filtered trajectories: online SWiRL (default), offline, or SFT"

_SPECIAL = {"lora"}  # nested table: TOML, or --lora/--lora-rank below


def _flag_type(annotation: object) -> tuple[type | None, list[str] | None]:
    """(scalar type, choices) of a config field's annotation; Optional is unwrapped."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _flag_type(inner[0])
    if origin is typing.Literal:
        return str, [str(a) for a in typing.get_args(annotation)]
    return (annotation if isinstance(annotation, type) else None), None


def configure(parser: argparse.ArgumentParser) -> None:
    import msgspec

    from swirl.training.config import TrainConfig

    parser.add_argument(
        "--config", default=None, help="TOML file ([train] table or top-level keys)"
    )
    hints = typing.get_type_hints(TrainConfig, include_extras=False)
    for field in msgspec.structs.fields(TrainConfig):
        if field.name in _SPECIAL:
            continue
        flag = "--" + field.name.replace("_", "-")
        kind, choices = _flag_type(hints[field.name])
        default = None if field.default is msgspec.NODEFAULT else field.default
        help_text = f"(default: {default})" if default is not None else ""
        if kind is bool:
            parser.add_argument(
                flag,
                dest=field.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        else:
            parser.add_argument(
                flag, dest=field.name, type=kind, choices=choices, default=None, help=help_text
            )
    parser.add_argument("--lora", action="store_true", help="train LoRA adapters (needs peft)")
    parser.add_argument("--lora-rank", type=int, default=None, help="LoRA rank (default 16)")
    parser.add_argument("--no-resume", action="store_true", help="ignore checkpoints in --out")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def config_from_args(args: argparse.Namespace):
    """The TrainConfig of a parsed command line (TOML file first, flags override)."""
    import msgspec

    from swirl.training.config import LoraSettings, TrainConfig, load_config

    overrides = {
        f.name: getattr(args, f.name, None)
        for f in msgspec.structs.fields(TrainConfig)
        if f.name not in _SPECIAL
    }
    if args.lora or args.lora_rank is not None:
        overrides["lora"] = msgspec.to_builtins(LoraSettings(rank=args.lora_rank or 16))
    return load_config(args.config, **overrides)


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
