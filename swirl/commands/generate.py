"""``swirl generate``: Stage 1, the model rolls out its own multi-step tool-use trajectories.

The output file is append-only: every finished trajectory is written and flushed at once, so
Ctrl-C or a kill loses nothing finished, and rerunning the same command skips every
(example id, sample index) already in the file. Turns are seeded per (seed, example, sample,
step), so a resumed run writes the same records as an uninterrupted one. (Bit for bit with
``--batch-size 1``; with larger batches the local backend's float32 rounding depends on the
batch's shape, which can rarely flip a sampled token.)
"""

from __future__ import annotations

import argparse
import sys

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
    import time

    from tqdm import tqdm

    from swirl.backends.factory import backend_from_args
    from swirl.commands.rollout_options import (
        apply_threads,
        env_config_from_args,
        rollout_tools,
        sampling_from_args,
    )
    from swirl.data import examples_from_args
    from swirl.env import run_episodes
    from swirl.jsonl import JsonlReader, JsonlWriter
    from swirl.schema import Trajectory
    from swirl.summary import summarize

    if args.samples_per_question < 1:
        raise ValueError(f"--samples-per-question must be >= 1, got {args.samples_per_question}")
    params = sampling_from_args(args)
    config = env_config_from_args(args)
    apply_threads(args)
    examples = examples_from_args(args, limit=args.limit)
    if not examples:
        raise ValueError(f"{args.data}: no questions to run")

    with JsonlWriter(args.out) as writer:  # opening drops a torn last line of a killed run
        done = {(t.example_id, t.sample_index) for t in JsonlReader(args.out, Trajectory)}
        wanted = {(e.id, s) for e in examples for s in range(args.samples_per_question)}
        todo = len(wanted - done)
        if done:
            print(f"{args.out}: {len(done & wanted)} of {len(wanted)} trajectories already done")
        if todo:
            tools = rollout_tools(args, examples)
            backend = backend_from_args(args)
            episodes = run_episodes(
                examples,
                backend,
                tools=tools,
                params=params,
                config=config,
                samples_per_question=args.samples_per_question,
                skip=done,
            )
            started = time.perf_counter()
            tokens = 0
            with tqdm(total=todo, unit="traj", desc="generate", file=sys.stderr) as bar:
                for trajectory in episodes:
                    writer.write(trajectory)
                    tokens += sum(len(step.token_ids) for step in trajectory.steps)
                    elapsed = max(time.perf_counter() - started, 1e-9)
                    bar.set_postfix_str(
                        f"{(bar.n + 1) / elapsed:.2f} traj/s, {tokens / elapsed:.1f} tok/s"
                    )
                    bar.update(1)

    summary = summarize(
        t for t in JsonlReader(args.out, Trajectory) if (t.example_id, t.sample_index) in wanted
    )
    print(f"{args.out}:")
    for line in summary.lines():
        print(f"  {line}")
    return 0
