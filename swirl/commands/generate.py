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
    from swirl.backends.factory import add_backend_arguments
    from swirl.data import add_data_arguments

    add_data_arguments(parser)
    parser.add_argument(
        "--out", required=True, metavar="FILE", help="trajectories JSONL (appended)"
    )
    parser.add_argument("--limit", type=int, default=None, help="first N questions (default: all)")
    parser.add_argument(
        "--samples-per-question", type=int, default=1, help="trajectories per question (paper: 5)"
    )
    parser.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="actions per trajectory (default: 5 QA, 10 math)",
    )
    parser.add_argument("--temperature", type=float, default=0.7, help="0 = greedy (default 0.7)")
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


def _tools(args: argparse.Namespace, examples: list) -> list:
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


def run(args: argparse.Namespace) -> int:
    import time

    from tqdm import tqdm

    from swirl.backends.base import SamplingParams
    from swirl.backends.factory import backend_from_args
    from swirl.data import examples_from_args
    from swirl.env import EnvConfig, run_episodes
    from swirl.jsonl import JsonlReader, JsonlWriter
    from swirl.schema import Trajectory
    from swirl.summary import summarize

    if args.samples_per_question < 1:
        raise ValueError(f"--samples-per-question must be >= 1, got {args.samples_per_question}")
    params = SamplingParams(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
    )
    config = EnvConfig(
        max_steps=args.max_steps,
        few_shot=args.few_shot,
        observation_max_tokens=args.observation_tokens,
        max_live_episodes=args.batch_size,
    )
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
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
            tools = _tools(args, examples)
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
