"""BeerQA: a JSON object ``{"version", "split", "data": [...]}`` whose records are
``{"id", "src", "question", "answers", "context"}`` with ``context = [[title, paragraph], ...]`` (the
gold paragraphs of train/dev questions; ``src`` is ``"hotpotqa"``, ``"squad"`` or ``"beerqa"``).
The test file's records are only ``{"id", "question"}``; format detection recognises the file by
its wrapper.

Supporting facts are the context paragraphs (``sentence=0``: paragraphs, not sentences), each
naming its corpus document. Test records without ``answers`` get ``answers=[]``. The corpus is
every distinct context paragraph (paragraphs that share a title: ``title``, ``title#2``, ...).
"""

from __future__ import annotations

from collections.abc import Iterable

from swirl.corpus import Document, PassageNames, documents_from_passages
from swirl.data.records import Record, fail, field, passage_facts, text_list
from swirl.schema import Example

LIST_KEY = "data"


def paragraphs(record: Record) -> list[tuple[str, str]]:
    result = []
    for entry in field(record, "context", list, default=[]):
        if not (
            isinstance(entry, list) and len(entry) == 2 and all(isinstance(x, str) for x in entry)
        ):
            raise fail(record, "context", "expected a list of [title, paragraph] pairs")
        result.append((entry[0], entry[1]))
    return result


def to_example(record: Record, *, dataset: str, names: PassageNames) -> Example:
    """One record as an example; ``names`` names the passages of the file's records so far."""
    answers = text_list(record, "answers", field(record, "answers", list, default=[]))
    metadata = {"src": record.data["src"]} if isinstance(record.data.get("src"), str) else {}
    return Example(
        id=str(field(record, "id", (str, int))),
        question=field(record, "question", str).strip(),
        answers=answers,
        dataset=dataset,
        task="qa",
        supporting_facts=passage_facts(paragraphs(record), names),
        metadata=metadata,
    )


def load(records: Iterable[Record], *, dataset: str = "beerqa") -> list[Example]:
    names = PassageNames()
    return [to_example(record, dataset=dataset, names=names) for record in records]


def corpus(records: Iterable[Record]) -> list[Document]:
    return documents_from_passages(pair for record in records for pair in paragraphs(record))
