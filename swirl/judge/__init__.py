"""Judging trajectories: process labels (GOOD/BAD per step) and outcome labels (YES/NO).

- :mod:`swirl.judge.verdict`: ``parse_verdict`` reads a verdict word out of a judge's reply;
- :mod:`swirl.judge.prompts`: our judge prompts, with quoted material fenced against injection;
- :mod:`swirl.judge.reference`: the reference judge from gold annotations (offline runs, tests);
- :mod:`swirl.judge.grounded`: the paper's process judge without a model (answers need evidence);
- :mod:`swirl.judge.llm`: the LLM judge over any generation backend, with retries and voting;
- :mod:`swirl.judge.cache`: the on-disk cache of judge replies.
"""

from __future__ import annotations

from swirl.judge.base import MODES, Judge, Mode, with_labels
from swirl.judge.grounded import GROUNDED_JUDGE, GroundedJudge
from swirl.judge.reference import REFERENCE_JUDGE, ReferenceJudge, answer_is_correct
from swirl.judge.verdict import parse_verdict

__all__ = [
    "GROUNDED_JUDGE",
    "MODES",
    "REFERENCE_JUDGE",
    "GroundedJudge",
    "Judge",
    "Mode",
    "ReferenceJudge",
    "answer_is_correct",
    "parse_verdict",
    "with_labels",
]
