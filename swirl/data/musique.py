"""MuSiQue: JSONL of ``{"id", "question", "answer", "answer_aliases", "answerable", "paragraphs",
"question_decomposition"}`` with ``paragraphs = [{"idx", "title", "paragraph_text", "is_supporting"}]``
and ``question_decomposition = [{"id", "question", "answer", "paragraph_support_idx"}]``.

An example's answers are ``[answer, *answer_aliases]``; its supporting facts are the supporting
paragraphs (``sentence=0``: MuSiQue marks whole paragraphs), each naming its corpus document; its
reference steps are the decomposition as ``"sub-question -> answer"`` (``#1`` refers to the first
step's answer). The corpus is every distinct paragraph; paragraphs that share a title get the
ids ``title``, ``title#2``, ... (:class:`~swirl.corpus.PassageNames`), and so do the facts.
"""

from __future__ import annotations

from collections.abc import Iterable

from swirl.corpus import Document, PassageNames, documents_from_passages
from swirl.data.records import Record, fail, field, passage_facts, text_list
from swirl.schema import Example


def paragraphs(record: Record) -> list[dict]:
    value = field(record, "paragraphs", list)
    for paragraph in value:
        if not (
            isinstance(paragraph, dict)
            and isinstance(paragraph.get("title"), str)
            and isinstance(paragraph.get("paragraph_text"), str)
        ):
            raise fail(record, "paragraphs", "expected objects with 'title' and 'paragraph_text'")
    return value


def _passage(paragraph: dict) -> tuple[str, str]:
    return paragraph["title"], paragraph["paragraph_text"]


def to_example(record: Record, *, dataset: str, names: PassageNames) -> Example:
    """One record as an example; ``names`` names the passages of the file's records so far."""
    aliases = text_list(record, "answer_aliases", field(record, "answer_aliases", list, default=[]))
    steps = []
    for step in field(record, "question_decomposition", list, default=[]):
        if not (
            isinstance(step, dict)
            and isinstance(step.get("question"), str)
            and isinstance(step.get("answer"), str)
        ):
            raise fail(
                record, "question_decomposition", "expected objects with 'question' and 'answer'"
            )
        steps.append(f"{step['question']} -> {step['answer']}")
    answer = field(record, "answer", str)
    found = paragraphs(record)
    return Example(
        id=str(field(record, "id", (str, int))),
        question=field(record, "question", str).strip(),
        answers=[answer, *(alias for alias in aliases if alias != answer)],
        dataset=dataset,
        task="qa",
        supporting_facts=passage_facts(
            [_passage(p) for p in found],
            names,
            [p.get("is_supporting") is True for p in found],
        ),
        reference_steps=steps,
        metadata={"answerable": field(record, "answerable", bool, default=True)},
    )


def load(records: Iterable[Record], *, dataset: str = "musique") -> list[Example]:
    names = PassageNames()
    return [to_example(record, dataset=dataset, names=names) for record in records]


def corpus(records: Iterable[Record]) -> list[Document]:
    return documents_from_passages(_passage(p) for record in records for p in paragraphs(record))
