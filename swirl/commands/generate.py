"""``swirl generate``: Stage 1, the model rolls out its own multi-step tool-use trajectories
into an append-only, resumable JSONL (see :mod:`swirl.generate`)."""

from __future__ import annotations

import argparse

HELP = "roll out multi-step tool-use trajectories (Stage 1) into an append-only JSONL"


def configure(parser: argparse.ArgumentParser) -> None:
    from swirl.commands.rollout_options import add_rollout_arguments
    from swirl.data import add_data_arguments

    add_data_arguments(parser)
    parser.add_argument(
        "--out", required=True, metavar="FILE", help="trajectories JSONL (appended)"
    )
    parser.add_argument(
        "--samples-per-question", type=int, default=1, help="trajectories per question (paper: 5)"
    )
    add_rollout_arguments(parser, temperature=0.7)


def run(args: argparse.Namespace) -> int:
    from swirl.backends.factory import backend_from_args
    from swirl.commands.rollout_options import (
        apply_threads,
        env_config_from_args,
        rollout_tools,
        sampling_from_args,
    )
    from swirl.data import examples_from_args
    from swirl.generate import generate_to_file

    if args.samples_per_question < 1:
        raise ValueError(f"--samples-per-question must be >= 1, got {args.samples_per_question}")
    params = sampling_from_args(args)
    config = env_config_from_args(args)
    apply_threads(args)
    examples = examples_from_args(args, limit=args.limit)
    if not examples:
        raise ValueError(f"{args.data}: no questions to run")
    summary = generate_to_file(
        examples,
        args.out,
        backend=lambda: backend_from_args(args),
        tools=lambda: rollout_tools(args, examples),
        params=params,
        config=config,
        samples_per_question=args.samples_per_question,
    )
    print(f"{args.out}:")
    for line in summary.lines():
        print(f"  {line}")
    return 0
