"""``swirl data``: look at a dataset (built-in, hub or file) and export it as swirl files."""

from __future__ import annotations

import argparse

HELP = "summarise a dataset (splits, strata, fingerprints), show examples, export it as JSONL"


def configure(parser: argparse.ArgumentParser) -> None:
    from swirl.data import add_data_arguments

    parser.add_argument(
        "dataset", nargs="?", default=None, metavar="NAME_OR_PATH", help="the same as --data"
    )
    add_data_arguments(parser, required=False)
    parser.add_argument("--limit", type=int, default=None, help="first N examples (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="generated datasets: which questions")
    parser.add_argument("--show", type=int, default=3, metavar="K", help="print K examples (3)")
    parser.add_argument("--out", metavar="FILE", help="write the examples (swirl Example JSONL)")
    parser.add_argument("--corpus-out", metavar="FILE", help="write the search corpus JSONL")


def _strata_table(rows: dict[str, list]) -> list[str]:
    """One row per split: its size, its questions per stratum and its fingerprint."""
    from swirl.data.fingerprint import questions_fingerprint
    from swirl.data.strata import stratum_counts

    counts = {split: stratum_counts(examples) for split, examples in rows.items()}
    strata = sorted({s for c in counts.values() for s in c})
    lines = [
        "| split | questions | " + " | ".join(strata) + " | questions sha256 |",
        "|---|---|" + "---|" * len(strata) + "---|",
    ]
    for split, examples in rows.items():
        cells = " | ".join(str(counts[split].get(s, 0)) for s in strata)
        lines.append(f"| {split} | {len(examples)} | {cells} | {questions_fingerprint(examples)} |")
    return lines


def run(args: argparse.Namespace) -> int:
    from pathlib import Path
    from statistics import mean

    from swirl.corpus import corpus_fingerprint, write_corpus
    from swirl.data import corpus_from_args, examples_from_args, load_examples
    from swirl.data.registry import is_generated, splits_of
    from swirl.jsonl import write_jsonl

    if args.dataset is not None and args.data is not None and args.dataset != args.data:
        raise ValueError(f"give the dataset once: {args.dataset!r} and --data {args.data!r}")
    args.data = args.data or args.dataset
    if args.data is None:
        raise ValueError("name a dataset: swirl data NAME_OR_PATH (or --data)")
    examples = examples_from_args(args, limit=args.limit, seed=args.seed)
    generated = is_generated(args.data)
    if generated:
        # Every split of a built-in dataset, so its design can be checked at a glance.
        rows = {
            split: load_examples(args.data, split=split, limit=args.limit, seed=args.seed)
            for split in splits_of(args.data) or ()
        }
        print(f"{args.data} (seed {args.seed}): questions per stratum and fingerprint per split")
        print("\n".join(_strata_table(rows)))
        try:
            documents = corpus_from_args(args)
        except ValueError:  # a math dataset has no corpus
            documents = None
        if documents is not None:
            print(f"corpus: {len(documents)} documents, sha256 {corpus_fingerprint(documents)}")
        print()
    tasks = "/".join(sorted({e.task for e in examples})) or "-"
    split = "" if Path(args.data).exists() else f" ({args.split})"  # a file is one split
    print(f"{args.data}{split}: {len(examples)} examples, task {tasks}")
    if examples:
        print(
            f"  per example: {mean(len(e.answers) for e in examples):.2f} answers, "
            f"{mean(len(e.supporting_facts) for e in examples):.2f} supporting facts, "
            f"{mean(len(e.reference_steps) for e in examples):.2f} reference steps"
        )
        if not generated:
            print("\n".join(f"  {line}" for line in _strata_table({args.split: examples})))
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
