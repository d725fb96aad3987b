"""Where the process reward lies on demo-qa: GOOD rate of each action kind by how much evidence
the state already holds (the number of earlier GOOD searches, each of which retrieved a new
supporting document; a demo-qa question has two).

    python docs/study-demo-qa/reward_structure.py runs/study/seed-0/stage1/labelled.jsonl [...]

Reads labelled trajectories (``swirl judge`` output) and prints one table per file.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path


def reward_table(path: str) -> str:
    """A markdown table: evidence found (0, 1, 2+) x action kind -> count and GOOD rate."""
    taken: Counter[tuple[int, str]] = Counter()
    good: Counter[tuple[int, str]] = Counter()
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        trajectory = json.loads(line)
        evidence = 0
        for step in trajectory["steps"]:
            kind = step["action"]["kind"]
            verdict = bool(step["process"] and step["process"]["verdict"])
            cell = (min(evidence, 2), kind)
            taken[cell] += 1
            good[cell] += verdict
            evidence += kind == "search" and verdict
    kinds = sorted({kind for _, kind in taken})
    rows = ["| evidence found | " + " | ".join(kinds) + " |", "|---" * (len(kinds) + 1) + "|"]
    for evidence in (0, 1, 2):
        cells = []
        for kind in kinds:
            count = taken[(evidence, kind)]
            cells.append(f"{count} ({good[(evidence, kind)] / count:.2f})" if count else "-")
        rows.append(f"| {evidence}{'+' if evidence == 2 else ''} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        print(f"{argument}: actions taken (GOOD rate)\n{reward_table(argument)}\n")
