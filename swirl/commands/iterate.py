"""``swirl iterate --rounds R``: generate with the current model, judge, filter, train, evaluate,
and repeat from the trained model; each round in its own directory, resumable."""

from __future__ import annotations

import argparse

HELP = "SWiRL rounds: generate, judge, filter, train, evaluate, repeat with the trained model"


def configure(parser: argparse.ArgumentParser) -> None:
    from swirl.commands.run import add_run_arguments

    add_run_arguments(parser)
    parser.add_argument("--rounds", type=int, required=True, help="how many rounds")


def run(args: argparse.Namespace) -> int:
    from swirl.commands.run import pipeline_from_args
    from swirl.pipeline import model_path

    pipeline = pipeline_from_args(args, rounds=args.rounds)
    print(f"final model: {model_path(pipeline.iterate())}")
    return 0
