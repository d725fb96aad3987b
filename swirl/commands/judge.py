"""``swirl judge``: label every step (GOOD/BAD) and every outcome (YES/NO) of a trajectory file."""

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
    add_data_arguments(parser)
    add_judge_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from swirl.data import examples_from_args
    from swirl.judge.labelling import label_file
    from swirl.judge.loading import judge_spec_from_args, load_judge

    spec = judge_spec_from_args(args)
    examples = {example.id: example for example in examples_from_args(args)}
    judge = load_judge(spec, args)
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
