"""Exact match and tool calls by demo-qa question kind: bridge questions need two searches
(the second names what the first found); comparison questions name both entities, and half of
their answers can be had by a guess between the two names (or yes/no).

    .venv/bin/python docs/study-demo-qa/question_kinds.py runs/study/seed-0/base/eval [...]

Reads each evaluation directory's ``records.jsonl`` and ``summary.json`` (its split), takes each
question's kind from the dataset (``Example.metadata["type"]``, as HotPotQA records it), and
prints one markdown row per directory. The questions are the study's (``data_seed`` 0).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from swirl.data import load_examples

# Enough questions to hold every evaluated one: a split's first N are the same for every larger N.
DRAWN = 1000


def question_kinds(split: str) -> dict[str, str]:
    """Example id -> "bridge" or "comparison" for the first ``DRAWN`` questions of ``split``
    ("validation" questions come from the train split)."""
    source = "test" if split == "test" else "train"
    examples = load_examples("demo-qa", split=source, limit=DRAWN, seed=0)
    return {example.id: str(example.metadata["type"]) for example in examples}


def kind_row(folder: str) -> str:
    """``| folder | bridge: n, EM, tools | comparison: n, EM, tools |``."""
    folder_path = Path(folder)
    split = json.loads((folder_path / "summary.json").read_text())["settings"]["split"]
    kinds = question_kinds(split)
    by_kind: dict[str, list[dict]] = {"bridge": [], "comparison": []}
    for line in (folder_path / "records.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        by_kind[kinds[record["example_id"]]].append(record)
    cells = []
    for records in by_kind.values():
        count = len(records)
        exact = sum(bool(r["exact_match"]) for r in records) / max(count, 1)
        tools = sum(r["tool_calls"] for r in records) / max(count, 1)
        cells.append(f"{count} | {exact:.3f} | {tools:.2f}")
    return f"| {folder} | " + " | ".join(cells) + " |"


if __name__ == "__main__":
    print(
        "| evaluation | bridge n | bridge EM | bridge tools | comparison n | comparison EM "
        "| comparison tools |"
    )
    print("|---|---|---|---|---|---|---|")
    for argument in sys.argv[1:]:
        print(kind_row(argument))
