"""``swirl run``: the main job. With no arguments: on the embedded SmolLM2-135M and the built-in
``demo-qa`` data, evaluate the base model, generate, judge, filter (process), train with
step-wise RL, evaluate again, and write a report; everything under ``runs/<name>/``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, get_args

from swirl.filtering import Strategy

if TYPE_CHECKING:
    from swirl.pipeline import RunConfig

HELP = "the whole pipeline: evaluate, generate, judge, filter, train, evaluate, report"


def add_run_arguments(parser: argparse.ArgumentParser) -> RunConfig:
    """Flags shared by ``run`` and ``iterate`` (each overrides the TOML config); the defaults
    named in the help are :class:`~swirl.pipeline.RunConfig`'s, which it returns."""
    from swirl.pipeline import RunConfig

    defaults = RunConfig()
    parser.add_argument(
        "--config",
        default=None,
        help="TOML file: run keys and [rollout], [tools], [judge], [train] tables",
    )
    parser.add_argument(
        "--name", default="demo", help="run name: output in runs/NAME (default demo)"
    )
    parser.add_argument("--out", default=None, help="output directory (default runs/NAME)")
    parser.add_argument(
        "--data", default=None, help=f"dataset name or file (default {defaults.data})"
    )
    parser.add_argument("--model", default=None, help="HF model path or name (default: embedded)")
    parser.add_argument("--judge", default=None, help="reference | hf:PATH | openai:URL[#model]")
    parser.add_argument(
        "--eval-limit",
        type=int,
        default=None,
        help=f"held-out questions (default {defaults.eval_limit})",
    )
    parser.add_argument(
        "--train-limit",
        type=int,
        default=None,
        help=f"training questions per round (default {defaults.train_limit})",
    )
    parser.add_argument(
        "--samples-per-question",
        type=int,
        default=None,
        help=f"rollouts per question (default {defaults.samples_per_question})",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=None,
        help=f"Stage-1 sampling temperature (default {defaults.temperature})",
    )
    parser.add_argument("--filter", default=None, choices=get_args(Strategy))
    parser.add_argument(
        "--train-steps",
        type=int,
        default=None,
        help=f"optimizer steps per round (default {defaults.train.steps})",
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--rollout",
        default=None,
        help="where Stage 1 and training sample: local (default) | vllm (one vLLM server for the "
        "run, kept in sync with the policy) | vllm:URL (your server)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return defaults


def pipeline_from_args(args: argparse.Namespace, **extra):
    from pathlib import Path

    from swirl.pipeline import Pipeline, load_run_config

    overrides = {
        key: getattr(args, key)
        for key in (
            "data",
            "model",
            "eval_limit",
            "train_limit",
            "samples_per_question",
            "temperature",
            "filter",
            "seed",
        )
    }
    if args.judge is not None:
        overrides["judge"] = {"judge": args.judge}
    train = {}
    if args.train_steps is not None:
        train["steps"] = args.train_steps
    if args.rollout is not None:
        train["serving"] = {"engine": args.rollout}
    if train:
        overrides["train"] = train
    config = load_run_config(args.config, **overrides, **extra)
    return Pipeline(config, args.out or Path("runs") / args.name, threads=args.threads)


def configure(parser: argparse.ArgumentParser) -> None:
    rounds = add_run_arguments(parser).rounds
    parser.add_argument("--rounds", type=int, default=None, help=f"SWiRL rounds (default {rounds})")
    parser.add_argument(
        "--compare-sft",
        action="store_true",
        default=None,
        help="also train SFT on the same filtered data with the same budget, and evaluate it",
    )


def run(args: argparse.Namespace) -> int:
    pipeline = pipeline_from_args(args, rounds=args.rounds, compare_sft=args.compare_sft)
    report = pipeline.run()
    print(f"report: {report}")
    print(report.read_text())
    return 0
