"""``swirl decompose``: trajectories -> per-step sub-trajectories (the Stage-2 training states)."""

from __future__ import annotations

import argparse

HELP = "split trajectories into per-step (state, action) sub-trajectories"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--in", dest="input", required=True, help="trajectories JSONL")
    parser.add_argument("--out", required=True, help="sub-trajectories JSONL (overwritten)")


def run(args: argparse.Namespace) -> int:
    from swirl.decompose import decompose
    from swirl.jsonl import JsonlReader, write_jsonl
    from swirl.schema import Trajectory

    trajectories = 0

    def states():
        nonlocal trajectories
        for trajectory in JsonlReader(args.input, Trajectory):
            trajectories += 1
            yield from decompose(trajectory)

    written = write_jsonl(args.out, states())
    print(f"{trajectories} trajectories -> {written} sub-trajectories in {args.out}")
    return 0
