"""``swirl eval``: run the multi-step loop on held-out questions, judge, and report the paper's
metrics with 95% intervals (JSON, a Markdown table and per-question records)."""

from __future__ import annotations

import argparse
import sys

HELP = "evaluate a model on held-out questions: judge accuracy, EM, F1, cover, process label"


def configure(parser: argparse.ArgumentParser) -> None:
    from swirl.commands.rollout_options import add_rollout_arguments
    from swirl.data import add_data_arguments
    from swirl.judge.loading import add_judge_arguments

    add_data_arguments(parser)
    parser.set_defaults(split="test")  # held-out questions
    for action in parser._actions:  # the shared --split help names the generation default
        if action.dest == "split":
            action.help = "default: test"
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="output directory (a rerun resumes)"
    )
    parser.add_argument(
        "--judge-batch-size", type=int, default=16, help="trajectories judged together (default 16)"
    )
    add_rollout_arguments(parser, temperature=0.0)
    add_judge_arguments(parser)


def run(args: argparse.Namespace) -> int:
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
    from swirl.evaluate import evaluate, markdown
    from swirl.judge.loading import judge_spec_from_args, load_judge

    apply_threads(args)
    examples = examples_from_args(args, limit=args.limit)
    if not examples:
        raise ValueError(f"{args.data}: no questions to evaluate")
    spec = judge_spec_from_args(args)
    params = sampling_from_args(args)
    config = env_config_from_args(args)

    def rollout(pending):
        # The policy model and tools load only when some question still needs a rollout.
        pending = list(pending)
        if not pending:
            return iter(())
        backend = backend_from_args(args)
        return run_episodes(
            pending, backend, tools=rollout_tools(args, examples), params=params, config=config
        )

    judge = load_judge(spec, args)
    settings = {
        "data": str(args.data),
        "split": args.split,
        "model": args.model or "smollm2-135m",
        "backend": args.backend,
        "judge": judge.name,
        "temperature": args.temperature,
        "max_steps": args.max_steps,
        "few_shot": args.few_shot,
        "top_k": args.top_k,
    }
    with tqdm(total=len(examples), unit="q", desc="eval", file=sys.stderr) as bar:
        report = evaluate(
            examples,
            rollout,
            judge,
            args.out,
            judge_batch_size=args.judge_batch_size,
            settings=settings,
            on_record=lambda record: bar.update(1),
        )
    print(markdown(report), end="")
    print(f"-> {args.out}/summary.json, summary.md, records.jsonl")
    return 0
