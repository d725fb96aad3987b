"""GSM8K: JSONL of ``{"question", "answer"}``; the answer is worked text with calculator annotations
``<<48/2=24>>`` and a last line ``#### 72``.

Each record becomes an :class:`~swirl.schema.Example` with task ``"math"``, ``answers=["72"]`` and
``reference_steps=["48/2=24", ...]`` (the annotations in order). The Hugging Face copy
(``openai/gsm8k``, config ``main``) has the same two fields.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from swirl.data.records import Record, fail, field
from swirl.schema import Example

_ANNOTATION = re.compile(r"<<([^<>]*)>>")
_FINAL = re.compile(r"^####\s*(.+?)\s*$", re.MULTILINE)


def parse_solution(answer: str) -> tuple[str, list[str]] | None:
    """``(final answer, annotated steps)`` of a GSM8K solution, or None without a ``####`` line."""
    final = _FINAL.findall(answer)
    if not final:
        return None
    return final[-1], [step.strip() for step in _ANNOTATION.findall(answer)]


def to_example(record: Record, *, dataset: str, id_prefix: str) -> Example:
    question = field(record, "question", str)
    answer = field(record, "answer", str)
    parsed = parse_solution(answer)
    if parsed is None:
        raise fail(record, "answer", "no final '#### <answer>' line")
    final, steps = parsed
    identifier = record.data.get("id")
    return Example(
        id=str(identifier) if identifier is not None else f"{id_prefix}-{record.index}",
        question=question.strip(),
        answers=[final],
        dataset=dataset,
        task="math",
        reference_steps=steps,
    )


def load(records: Iterable[Record], *, dataset: str = "gsm8k", id_prefix: str) -> list[Example]:
    return [to_example(record, dataset=dataset, id_prefix=id_prefix) for record in records]
