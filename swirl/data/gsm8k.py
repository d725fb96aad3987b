"""GSM8K: JSONL of ``{"question", "answer"}``; the answer is worked text with calculator annotations
``<<48/2=24>>`` and a last line ``#### 72``.

Each record becomes an :class:`~swirl.schema.Example` with task ``"math"``, ``answers=["72"]`` and
``reference_steps=["48/2=24", ...]`` (the annotations in order). The Hugging Face copy
(``openai/gsm8k``, config ``main``) has the same two fields.

The records carry no id, so an example's id comes from its question (:class:`QuestionIds`): the
same question has the same id whatever the file is called, where it sits in the file, or whether
it came from the hub.
"""

from __future__ import annotations

import hashlib
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


class QuestionIds:
    """Ids from question texts: ``"<prefix>-<first 12 hex digits of SHA-256(question)>"``, and
    ``"...-k"`` for the k-th time (k >= 2, in reading order) one file repeats a question."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._seen: dict[str, int] = {}

    def __call__(self, question: str) -> str:
        count = self._seen.get(question, 0) + 1
        self._seen[question] = count
        digest = hashlib.sha256(question.encode()).hexdigest()[:12]
        return f"{self.prefix}-{digest}" if count == 1 else f"{self.prefix}-{digest}-{count}"


def to_example(record: Record, *, dataset: str, ids: QuestionIds) -> Example:
    """One record as an example; ``ids`` names it unless it has an ``id`` of its own."""
    question = field(record, "question", str).strip()
    answer = field(record, "answer", str)
    parsed = parse_solution(answer)
    if parsed is None:
        raise fail(record, "answer", "no final '#### <answer>' line")
    final, steps = parsed
    identifier = field(record, "id", (str, int), default=None)
    return Example(
        id=ids(question) if identifier is None else str(identifier),
        question=question,
        answers=[final],
        dataset=dataset,
        task="math",
        reference_steps=steps,
    )


def load(
    records: Iterable[Record], *, dataset: str = "gsm8k", id_prefix: str = "gsm8k"
) -> list[Example]:
    ids = QuestionIds(id_prefix)
    return [to_example(record, dataset=dataset, ids=ids) for record in records]
