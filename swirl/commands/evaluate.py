"""``swirl eval``: run the multi-step loop on held-out questions, judge, and report the paper's
metrics with 95% intervals (JSON, a Markdown table and per-question records), per stratum, with
the data's fingerprints and the model-free baselines (the per-kind majority answer from a
built-in dataset's train split)."""

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
    parser.add_argument(
        "--settings-of",
        default=None,
        metavar="FILE",
        help="reuse the rollout, tool and judge settings recorded with this trajectory file "
        "(e.g. the Stage-1 output); flags given explicitly override them",
    )
    add_rollout_arguments(parser, temperature=0.0)
    add_judge_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from swirl.backends.factory import backend_from_args
    from swirl.commands.rollout_options import (
        apply_threads,
        rollout_settings_from_args,
        sampling_from_args,
    )
    from swirl.data import examples_from_args, load_examples
    from swirl.data.fingerprint import evaluation_fingerprints
    from swirl.data.registry import is_generated
    from swirl.env import EnvConfig, run_episodes
    from swirl.evaluate import evaluate, markdown
    from swirl.flags import given_values
    from swirl.judge.loading import load_judge
    from swirl.settings import JudgeSettings, read_settings, with_overrides
    from swirl.tools.factory import tools_for_examples

    apply_threads(args)
    examples = examples_from_args(args, limit=args.limit)
    if not examples:
        raise ValueError(f"{args.data}: no questions to evaluate")
    recorded = None
    if args.settings_of is not None:
        recorded = read_settings(args.settings_of)
        if recorded is None:
            raise ValueError(f"--settings-of {args.settings_of}: no settings are recorded with it")
    rollout_settings, tool_settings = rollout_settings_from_args(args, recorded, args.settings_of)
    judge_settings = with_overrides(
        recorded.judge if recorded else None,
        JudgeSettings,
        given_values(args, JudgeSettings),
        source=args.settings_of,
    )
    params = sampling_from_args(args, rollout_settings)
    config = EnvConfig.from_settings(
        rollout_settings, tool_settings, max_live_episodes=args.batch_size
    )

    def rollout(pending):
        # The policy model and tools load only when some question still needs a rollout.
        pending = list(pending)
        if not pending:
            return iter(())
        tools = tools_for_examples(
            examples,
            args.data,
            split=args.split,
            data_format=args.data_format,
            settings=tool_settings,
        )
        return run_episodes(
            pending, backend_from_args(args), tools=tools, params=params, config=config
        )

    judge = load_judge(judge_settings)
    settings = {
        "data": str(args.data),
        "split": args.split,
        "model": args.model or "smollm2-135m",
        "backend": args.backend,
        "judge": judge.name,
        "temperature": args.temperature,
        "max_steps": rollout_settings.max_steps,
        "few_shot": rollout_settings.few_shot,
        "max_new_tokens": rollout_settings.max_new_tokens,
        "top_k": tool_settings.top_k,
        "search": tool_settings.retriever_url or tool_settings.search,
    }
    fingerprints = evaluation_fingerprints(
        examples,
        args.data,
        split=args.split,
        data_format=args.data_format,
        retriever_url=tool_settings.retriever_url,
    )
    # The per-kind majority baseline needs training questions: a built-in dataset's train split.
    training = load_examples(args.data, split="train") if is_generated(args.data) else None
    with tqdm(total=len(examples), unit="q", desc="eval", file=sys.stderr) as bar:
        report = evaluate(
            examples,
            rollout,
            judge,
            args.out,
            judge_batch_size=args.judge_batch_size,
            settings=settings,
            on_record=lambda record: bar.update(1),
            fingerprints=fingerprints,
            training=training,
        )
    print(markdown(report), end="")
    print(f"-> {args.out}/summary.json, summary.md, records.jsonl")
    return 0
