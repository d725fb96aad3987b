"""Exact match and tool calls by demo-qa question kind: bridge questions need two searches
(the second names what the first found); comparison questions name both entities, and half of
their answers can be had by a guess between the two names (or yes/no).

    python docs/study-demo-qa/question_kinds.py runs/study/seed-0/base/eval [...]

Reads each evaluation directory's ``records.jsonl`` and prints one markdown row per directory.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COMPARISON_OPENINGS = (
    "Who is older,",
    "Which company was founded first,",
    "Which city has a larger population,",
    "Were ",
)


def kind_of(question: str) -> str:
    """ "comparison" for the four comparison templates of ``swirl.data.demo_qa``, else "bridge"."""
    return "comparison" if question.startswith(COMPARISON_OPENINGS) else "bridge"


def kind_row(folder: str) -> str:
    """``| folder | bridge: n, EM, tools | comparison: n, EM, tools |``."""
    by_kind: dict[str, list[dict]] = {"bridge": [], "comparison": []}
    for line in (Path(folder) / "records.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        by_kind[kind_of(record["question"])].append(record)
    cells = []
    for records in by_kind.values():
        count = len(records)
        exact = sum(bool(r["exact_match"]) for r in records) / max(count, 1)
        tools = sum(r["tool_calls"] for r in records) / max(count, 1)
        cells.append(f"{count} | {exact:.3f} | {tools:.2f}")
    return f"| {folder} | " + " | ".join(cells) + " |"


if __name__ == "__main__":
    print(
        "| evaluation | bridge n | bridge EM | bridge tools | comparison n | comparison EM | comparison tools |"
    )
    print("|---|---|---|---|---|---|---|")
    for argument in sys.argv[1:]:
        print(kind_row(argument))
