"""Options shared by the commands that roll out the multi-step loop (``generate``, ``eval``):
sampling, the rollout and tool settings (:mod:`swirl.settings`), the policy backend, and
building them from the flags and the settings recorded with earlier data."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from swirl.settings import RecordedSettings, RolloutSettings, ToolSettings

if TYPE_CHECKING:
    from swirl.backends.base import SamplingParams


def add_rollout_arguments(parser: argparse.ArgumentParser, *, temperature: float) -> None:
    """Add the rollout flags; ``temperature`` is the command's default (0 = greedy)."""
    from swirl.backends.factory import add_backend_arguments
    from swirl.flags import add_struct_flags

    parser.add_argument("--limit", type=int, default=None, help="first N questions (default: all)")
    parser.add_argument(
        "--temperature",
        type=float,
        default=temperature,
        help=f"0 = greedy (default {temperature:g})",
    )
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    add_struct_flags(parser.add_argument_group("rollout"), RolloutSettings)
    add_struct_flags(parser.add_argument_group("tools"), ToolSettings)
    add_backend_arguments(parser)


def rollout_settings_from_args(
    args: argparse.Namespace, recorded: RecordedSettings | None = None, source: str | None = None
) -> tuple[RolloutSettings, ToolSettings]:
    """The rollout and tool settings: the ones ``recorded`` with ``source`` (else the defaults),
    with the flags the user gave on top (each differing one is warned about by name)."""
    from swirl.flags import given_values
    from swirl.settings import with_overrides

    return (
        with_overrides(
            recorded.rollout if recorded else None,
            RolloutSettings,
            given_values(args, RolloutSettings),
            source=source,
        ),
        with_overrides(
            recorded.tools if recorded else None,
            ToolSettings,
            given_values(args, ToolSettings),
            source=source,
        ),
    )


def sampling_from_args(args: argparse.Namespace, rollout: RolloutSettings) -> SamplingParams:
    from swirl.backends.base import SamplingParams

    return SamplingParams(
        max_new_tokens=rollout.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
    )


def apply_threads(args: argparse.Namespace) -> None:
    """Set torch's CPU threads when ``--threads`` was given."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
