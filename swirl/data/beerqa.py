"""BeerQA: a JSON object ``{"version", "split", "data": [...]}`` whose records are
``{"id", "src", "question", "answers", "context"}`` with ``context = [[title, paragraph], ...]`` (the
gold paragraphs of train/dev questions; ``src`` is ``"hotpotqa"``, ``"squad"`` or ``"beerqa"``).
The test file's records are only ``{"id", "question"}``; format detection recognises the file by
its wrapper.

Supporting facts are the context titles (``sentence=0``: paragraphs, not sentences). Test records
without ``answers`` get ``answers=[]``. The corpus is every distinct context paragraph.
"""

from __future__ import annotations

from collections.abc import Iterable

from swirl.corpus import Document, documents_from_passages
from swirl.data.records import Record, fail, field, text_list
from swirl.schema import Example, SupportingFact

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


def to_example(record: Record, *, dataset: str) -> Example:
    answers = text_list(record, "answers", field(record, "answers", list, default=[]))
    titles = list(dict.fromkeys(title for title, _ in paragraphs(record)))
    metadata = {"src": record.data["src"]} if isinstance(record.data.get("src"), str) else {}
    return Example(
        id=str(field(record, "id", (str, int))),
        question=field(record, "question", str).strip(),
        answers=answers,
        dataset=dataset,
        task="qa",
        supporting_facts=[SupportingFact(title=title, sentence=0) for title in titles],
        metadata=metadata,
    )


def load(records: Iterable[Record], *, dataset: str = "beerqa") -> list[Example]:
    return [to_example(record, dataset=dataset) for record in records]


def corpus(records: Iterable[Record]) -> list[Document]:
    return documents_from_passages(pair for record in records for pair in paragraphs(record))
