"""``swirl judge``: label every step (GOOD/BAD) and every outcome (YES/NO) of a trajectory file.

The data and the judge settings recorded with the input (see :mod:`swirl.settings`) are used
unless given; the output's settings add the judge's."""

from __future__ import annotations

import argparse

HELP = "label trajectories with a judge (process: per step GOOD/BAD; outcome: answer YES/NO)"


def configure(parser: argparse.ArgumentParser) -> None:
    from swirl.data import add_data_arguments
    from swirl.judge.base import MODES
    from swirl.judge.loading import add_judge_arguments

    parser.add_argument("--in", dest="input", required=True, help="trajectories JSONL")
    parser.add_argument(
        "--out", required=True, help="labelled trajectories JSONL (appended; a rerun resumes)"
    )
    parser.add_argument(
        "--mode", choices=MODES, default="both", help="which labels to make (default both)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=16, help="trajectories judged together (default 16)"
    )
    add_data_arguments(parser, required=False)
    add_judge_arguments(parser)


def recorded_examples(args: argparse.Namespace, recorded) -> list:
    """The questions of ``--data`` when given, else of the data recorded with the input."""
    from swirl.data import examples_from_args, load_examples

    if args.data is not None:
        return examples_from_args(args)
    if recorded is None:
        raise ValueError(f"{args.input} records no settings: pass --data (its questions)")
    return load_examples(
        recorded.data, split=recorded.split, seed=recorded.data_seed, format=recorded.data_format
    )


def run(args: argparse.Namespace) -> int:
    import msgspec

    from swirl.flags import given_values
    from swirl.judge.labelling import label_file
    from swirl.judge.loading import load_judge
    from swirl.settings import JudgeSettings, read_settings, with_overrides, write_settings

    recorded = read_settings(args.input)
    settings = with_overrides(
        recorded.judge if recorded else None,
        JudgeSettings,
        given_values(args, JudgeSettings),
        source=args.input,
    )
    examples = {example.id: example for example in recorded_examples(args, recorded)}
    judge = load_judge(settings)
    if recorded is not None:
        write_settings(args.out, msgspec.structs.replace(recorded, judge=settings))
    counts = label_file(
        judge, examples, args.input, args.out, args.mode, batch_size=args.batch_size
    )
    print(
        f"judge {judge.name}: labelled {counts.trajectories} trajectories -> {args.out}"
        f" ({counts.skipped} already labelled, skipped)"
    )
    if args.mode != "outcome":
        print(
            f"  steps: {counts.steps_good} GOOD, {counts.steps_bad} BAD, "
            f"{counts.steps_unknown} unknown"
        )
    if args.mode != "process":
        print(
            f"  outcomes: {counts.outcome_yes} YES, {counts.outcome_no} NO, "
            f"{counts.outcome_unknown} unknown"
        )
    stats = getattr(judge, "stats", None)
    if stats is not None:
        print(
            f"  judge requests {stats.requests}, backend calls {stats.backend_calls}, "
            f"cache hits {stats.cache_hits}, unparseable replies {stats.unparseable}, "
            f"failed requests {stats.failed}"
        )
    return 0
