"""``swirl validate``: check that JSONL files decode as swirl records, naming bad lines."""

from __future__ import annotations

import argparse

HELP = "check JSONL files against the swirl schema (examples, trajectories, sub-trajectories)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", help="JSONL files to check")
    parser.add_argument(
        "--type",
        choices=["trajectory", "example", "subtrajectory"],
        default="trajectory",
        help="record type every line must be (default: trajectory)",
    )
    parser.add_argument(
        "--keep-going", action="store_true", help="report every bad line instead of stopping"
    )


def run(args: argparse.Namespace) -> int:
    from swirl.jsonl import JsonlReader
    from swirl.schema import Example, SubTrajectory, Trajectory

    record_type = {"trajectory": Trajectory, "example": Example, "subtrajectory": SubTrajectory}
    failed = False
    for path in args.files:
        reader = JsonlReader(path, record_type[args.type], skip_bad=args.keep_going)
        count = sum(1 for _ in reader)
        if reader.skipped:
            failed = True
            lines = ", ".join(map(str, reader.bad_lines[:20]))
            print(f"{path}: {count} valid, {reader.skipped} bad (lines {lines})")
        else:
            print(f"{path}: {count} valid {args.type} records")
    return 1 if failed else 0
