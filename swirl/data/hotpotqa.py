"""HotPotQA: a JSON list of ``{"_id", "question", "answer", "supporting_facts", "context", "type",
"level"}`` with ``supporting_facts = [[title, sentence index], ...]`` and
``context = [[title, [sentence, ...]], ...]`` (sentences carry their leading spaces, so an article is
their concatenation).

The Hugging Face copy (``hotpotqa/hotpot_qa``) stores the same data column-wise:
``context = {"title": [...], "sentences": [[...], ...]}``, ``supporting_facts = {"title": [...],
"sent_id": [...]}`` and ``id`` for ``_id``; both shapes are read. Test-split records without
``answer`` get ``answers=[]``.

The corpus of a file is every distinct article of every record's context (the paper embeds "every
article of the data split"). A supporting fact names the corpus document of its record's article
(``document``; None when the context lacks that title).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from swirl.corpus import Document, PassageNames, documents_from_passages
from swirl.data.records import Record, fail, field
from swirl.schema import Example, SupportingFact


def _pairs(record: Record, name: str, second_key: str) -> list[tuple[Any, Any]]:
    """A list of 2-item pairs, from either ``[[a, b], ...]`` or ``{"title": [...], key: [...]}``."""
    value = field(record, name, (list, dict), default=[])
    if isinstance(value, dict):
        titles, seconds = value.get("title"), value.get(second_key)
        if (
            not isinstance(titles, list)
            or not isinstance(seconds, list)
            or len(titles) != len(seconds)
        ):
            raise fail(record, name, f"expected lists 'title' and {second_key!r} of equal length")
        return list(zip(titles, seconds, strict=True))
    if not all(isinstance(pair, list) and len(pair) == 2 for pair in value):
        raise fail(record, name, "expected a list of [title, value] pairs")
    return [(pair[0], pair[1]) for pair in value]


def articles(record: Record) -> list[tuple[str, list[str]]]:
    """The context of one record as (title, sentences) pairs."""
    result = []
    for title, sentences in _pairs(record, "context", "sentences"):
        if (
            not isinstance(title, str)
            or not isinstance(sentences, list)
            or not all(isinstance(s, str) for s in sentences)
        ):
            raise fail(record, "context", "expected [title, [sentence, ...]] entries")
        result.append((title, sentences))
    return result


def _passages(record: Record) -> list[tuple[str, str]]:
    """The context articles as (title, text) passages: a text is its sentences joined."""
    return [(title, "".join(sentences)) for title, sentences in articles(record)]


def supporting_facts(record: Record, documents: Mapping[str, str]) -> list[SupportingFact]:
    """The record's facts; ``documents`` maps its context titles to corpus ids."""
    facts = []
    for title, sentence in _pairs(record, "supporting_facts", "sent_id"):
        if (
            not isinstance(title, str)
            or not isinstance(sentence, int)
            or isinstance(sentence, bool)
        ):
            raise fail(
                record, "supporting_facts", "expected a list of [title, sentence index] pairs"
            )
        facts.append(SupportingFact(title=title, sentence=sentence, document=documents.get(title)))
    return facts


def to_example(record: Record, *, dataset: str, names: PassageNames) -> Example:
    """One record as an example; ``names`` names the passages of the file's records so far."""
    documents: dict[str, str] = {}
    for title, text in _passages(record):  # all of them, in order: the corpus's ids
        documents.setdefault(title, names.name(title, text)[0])
    identifier = field(record, "_id", (str, int), default=None)
    if identifier is None:
        identifier = field(record, "id", (str, int))
    answer = field(record, "answer", str, default=None)
    metadata = {
        key: record.data[key] for key in ("type", "level") if isinstance(record.data.get(key), str)
    }
    return Example(
        id=str(identifier),
        question=field(record, "question", str).strip(),
        answers=[] if answer is None else [answer],
        dataset=dataset,
        task="qa",
        supporting_facts=supporting_facts(record, documents),
        metadata=metadata,
    )


def load(records: Iterable[Record], *, dataset: str = "hotpotqa") -> list[Example]:
    names = PassageNames()
    return [to_example(record, dataset=dataset, names=names) for record in records]


def corpus(records: Iterable[Record]) -> list[Document]:
    return documents_from_passages(pair for record in records for pair in _passages(record))
