"""``swirl filter``: keep labelled trajectories by one of the paper's four strategies."""

from __future__ import annotations

import argparse

HELP = "filter labelled trajectories: none | process | outcome | process+outcome, at a fixed size"


def configure(parser: argparse.ArgumentParser) -> None:
    from swirl.filtering import STRATEGIES

    parser.add_argument("--in", dest="input", required=True, help="labelled trajectories JSONL")
    parser.add_argument("--out", required=True, help="filtered trajectories JSONL (overwritten)")
    parser.add_argument(
        "--strategy",
        choices=STRATEGIES,
        required=True,
        help="none: all; process: every step GOOD; outcome: answer judged YES; process+outcome: both",
    )
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="sample exactly this many of the kept trajectories (compare strategies at equal size)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the --size sample (default 0)")


def print_summary(counts, chosen: str) -> None:
    """A table of what each strategy keeps, so strategies can be compared before choosing."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="trajectories and steps kept per strategy (before --size)")
    for column in ("strategy", "trajectories", "steps"):
        table.add_column(column, justify="left" if column == "strategy" else "right")
    for count in counts:
        name = f"{count.strategy} <" if count.strategy == chosen else count.strategy
        missing = "labels missing"
        table.add_row(
            name,
            missing if count.trajectories is None else str(count.trajectories),
            "" if count.steps is None else str(count.steps),
        )
    Console(stderr=True).print(table)


def run(args: argparse.Namespace) -> int:
    from swirl.filtering import copy_records, read_labels, select_indices, summarize

    labels = read_labels(args.input)
    print_summary(summarize(labels), args.strategy)
    indices = select_indices(labels, args.strategy, args.size, args.seed)
    written = copy_records(args.input, args.out, indices)
    steps = sum(len(labels[index].steps) for index in indices)
    print(
        f"{args.strategy}: kept {written} of {len(labels)} trajectories ({steps} steps) "
        f"-> {args.out}"
    )
    return 0
