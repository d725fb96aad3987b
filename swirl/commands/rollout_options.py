"""Options shared by the commands that roll out the multi-step loop (``generate``, ``eval``):
sampling, the environment, the tools and the policy backend, and building them from the flags."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from swirl.backends.base import SamplingParams
    from swirl.env import EnvConfig
    from swirl.schema import Example
    from swirl.tools.base import Tool


def add_rollout_arguments(parser: argparse.ArgumentParser, *, temperature: float) -> None:
    """Add the rollout flags; ``temperature`` is the command's default (0 = greedy)."""
    from swirl.backends.factory import add_backend_arguments

    parser.add_argument("--limit", type=int, default=None, help="first N questions (default: all)")
    parser.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="actions per trajectory (default: 5 QA, 10 math)",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=temperature,
        help=f"0 = greedy (default {temperature:g})",
    )
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument(
        "--max-new-tokens", type=int, default=256, help="tokens per model turn (default 256)"
    )
    parser.add_argument(
        "--few-shot", type=int, default=2, help="worked examples in the prompt (default 2)"
    )
    parser.add_argument(
        "--observation-tokens",
        type=int,
        default=256,
        help="a tool result is cut to this many tokens (default 256)",
    )
    parser.add_argument(
        "--top-k", type=int, default=1, help="documents per search (default 1, as in the paper)"
    )
    parser.add_argument(
        "--search", choices=["bm25", "dense"], default="bm25", help="local search index kind"
    )
    parser.add_argument(
        "--retriever-url",
        default=None,
        help="use a Search-R1 /retrieve server instead of a local index of the dataset's corpus",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    add_backend_arguments(parser)


def sampling_from_args(args: argparse.Namespace) -> SamplingParams:
    from swirl.backends.base import SamplingParams

    return SamplingParams(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
    )


def env_config_from_args(args: argparse.Namespace) -> EnvConfig:
    from swirl.env import EnvConfig

    return EnvConfig(
        max_steps=args.max_steps,
        few_shot=args.few_shot,
        observation_max_tokens=args.observation_tokens,
        max_live_episodes=args.batch_size,
    )


def apply_threads(args: argparse.Namespace) -> None:
    """Set torch's CPU threads when ``--threads`` was given."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)


def rollout_tools(args: argparse.Namespace, examples: list[Example]) -> list[Tool]:
    """The calculator, plus a search tool when any question is a QA one."""
    from swirl.tools.calculator import Calculator

    tools: list = [Calculator()]
    if any(example.task == "qa" for example in examples):
        if args.retriever_url:
            from swirl.tools.remote_search import RemoteSearch

            tools.append(RemoteSearch(args.retriever_url, top_k=args.top_k))
        else:
            from swirl.data import load_corpus
            from swirl.tools.search import search_tool

            corpus = load_corpus(args.data, split=args.split, format=args.data_format)
            tools.append(search_tool(corpus, backend=args.search, top_k=args.top_k))
    return tools
