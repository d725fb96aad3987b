"""``swirl eval``: run the multi-step loop on held-out questions, judge, and report the paper's
metrics with 95% intervals (JSON, a Markdown table and per-question records)."""

from __future__ import annotations

import argparse
import sys

HELP = "evaluate a model on held-out questions: judge accuracy, EM, F1, cover, process label"


def configure(parser: argparse.ArgumentParser) -> None:
    from swirl.backends.factory import add_backend_arguments
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
    parser.add_argument("--limit", type=int, default=None, help="first N questions (default: all)")
    parser.add_argument(
        "--max-steps", type=int, default=None, help="actions per question (default: 5 QA, 10 math)"
    )
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (the default)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument(
        "--max-new-tokens", type=int, default=256, help="tokens per model turn (default 256)"
    )
    parser.add_argument(
        "--few-shot", type=int, default=2, help="worked examples in the prompt (default 2)"
    )
    parser.add_argument(
        "--observation-tokens", type=int, default=256, help="tool results cut to this (default 256)"
    )
    parser.add_argument(
        "--top-k", type=int, default=1, help="documents per search (default 1, as in the paper)"
    )
    parser.add_argument("--search", choices=["bm25", "dense"], default="bm25", help="search index")
    parser.add_argument(
        "--retriever-url", default=None, help="a Search-R1 /retrieve server instead of an index"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument(
        "--judge-batch-size", type=int, default=16, help="trajectories judged together (default 16)"
    )
    add_backend_arguments(parser)
    add_judge_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from swirl.backends.base import SamplingParams
    from swirl.backends.factory import backend_from_args
    from swirl.commands.generate import _tools as build_tools
    from swirl.data import examples_from_args
    from swirl.env import EnvConfig, run_episodes
    from swirl.evaluate import evaluate, markdown
    from swirl.judge.loading import judge_spec_from_args, load_judge

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    examples = examples_from_args(args, limit=args.limit)
    if not examples:
        raise ValueError(f"{args.data}: no questions to evaluate")
    spec = judge_spec_from_args(args)
    params = SamplingParams(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed
    )
    config = EnvConfig(
        max_steps=args.max_steps,
        few_shot=args.few_shot,
        observation_max_tokens=args.observation_tokens,
        max_live_episodes=args.batch_size,
    )

    def rollout(pending):
        # The policy model and tools load only when some question still needs a rollout.
        pending = list(pending)
        if not pending:
            return iter(())
        backend = backend_from_args(args)
        return run_episodes(
            pending, backend, tools=build_tools(args, examples), params=params, config=config
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
