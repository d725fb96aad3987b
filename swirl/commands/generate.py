"""``swirl generate``: Stage 1, the model rolls out its own multi-step tool-use trajectories
into an append-only, resumable JSONL (see :mod:`swirl.generate`), with the settings that made
them recorded beside it (``OUT.settings.json``, see :mod:`swirl.settings`)."""

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
        rollout_settings_from_args,
        sampling_from_args,
    )
    from swirl.data import examples_from_args
    from swirl.env import EnvConfig
    from swirl.generate import generate_to_file
    from swirl.settings import RecordedSettings, settings_path
    from swirl.tools.factory import tools_for_examples

    if args.samples_per_question < 1:
        raise ValueError(f"--samples-per-question must be >= 1, got {args.samples_per_question}")
    rollout, tool_settings = rollout_settings_from_args(args)
    params = sampling_from_args(args, rollout)
    apply_threads(args)
    examples = examples_from_args(args, limit=args.limit)
    if not examples:
        raise ValueError(f"{args.data}: no questions to run")
    settings = RecordedSettings(
        data=str(args.data),
        data_format=args.data_format,
        split=args.split,
        model=args.model,
        temperature=params.temperature,
        top_p=params.top_p,
        seed=params.seed,
        samples_per_question=args.samples_per_question,
        rollout=rollout,
        tools=tool_settings,
    )
    summary = generate_to_file(
        examples,
        args.out,
        backend=lambda: backend_from_args(args),
        tools=lambda: tools_for_examples(
            examples,
            args.data,
            split=args.split,
            data_format=args.data_format,
            settings=tool_settings,
        ),
        params=params,
        config=EnvConfig.from_settings(rollout, tool_settings, max_live_episodes=args.batch_size),
        samples_per_question=args.samples_per_question,
        settings=settings,
    )
    print(f"{args.out} (settings: {settings_path(args.out)}):")
    for line in summary.lines():
        print(f"  {line}")
    return 0
