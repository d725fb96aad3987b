"""``swirl data``: look at a dataset (built-in, hub or file) and export it as swirl files."""

from __future__ import annotations

import argparse

HELP = "summarise a dataset, show examples, export its examples and search corpus as JSONL"


def configure(parser: argparse.ArgumentParser) -> None:
    from swirl.data import add_data_arguments

    add_data_arguments(parser)
    parser.add_argument("--limit", type=int, default=None, help="first N examples (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="generated datasets: which questions")
    parser.add_argument("--show", type=int, default=3, metavar="K", help="print K examples (3)")
    parser.add_argument("--out", metavar="FILE", help="write the examples (swirl Example JSONL)")
    parser.add_argument("--corpus-out", metavar="FILE", help="write the search corpus JSONL")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path
    from statistics import mean

    from swirl.corpus import write_corpus
    from swirl.data import corpus_from_args, examples_from_args
    from swirl.jsonl import write_jsonl

    examples = examples_from_args(args, limit=args.limit, seed=args.seed)
    tasks = "/".join(sorted({e.task for e in examples})) or "-"
    split = "" if Path(args.data).exists() else f" ({args.split})"  # a file is one split
    print(f"{args.data}{split}: {len(examples)} examples, task {tasks}")
    if examples:
        print(
            f"  per example: {mean(len(e.answers) for e in examples):.2f} answers, "
            f"{mean(len(e.supporting_facts) for e in examples):.2f} supporting facts, "
            f"{mean(len(e.reference_steps) for e in examples):.2f} reference steps"
        )
    for example in examples[: args.show]:
        steps = f"  [{'; '.join(example.reference_steps)}]" if example.reference_steps else ""
        print(f"  {example.id}: {example.question} -> {' | '.join(example.answers)}{steps}")
    if args.out:
        print(f"wrote {write_jsonl(args.out, examples)} examples to {args.out}")
    if args.corpus_out:
        # a test split without contexts has an empty corpus: exported with a warning, not refused
        documents = corpus_from_args(args, allow_empty=True)
        print(f"wrote {write_corpus(args.corpus_out, documents)} documents to {args.corpus_out}")
    return 0
