"""CofCA (Wu et al. 2024, "Cofca: A Step-Wise Counterfactual Multi-hop QA benchmark").

What is known of the data: 300 counterfactually edited Wikipedia passages, each with one 2-hop,
one 3-hop and one 4-hop question and their sub-question/answer pairs (3,600 QA pairs). The release
file format is not public in a form we could check (the paper links an anonymous repository), so
this loader reads a documented assumption, one question per record, as a JSON list, JSONL, or an
object ``{"data": [...]}``::

    {"id": "cofca-12-3hop",                          # optional; default "cofca-<record index>"
     "question": "...",
     "answer": "..." | ["...", ...],                  # or "answers": [...]
     "passage": "..." | ["...", ...] | [[title, text], ...],   # or "context" in the same forms
     "title": "...",                                  # optional title of a plain-text passage
     "sub_qa": [{"question": "...", "answer": "..."}, ...]}    # optional; or "sub_questions"

A plain-text passage without a title is titled ``"<id> passage <k>"``. Supporting facts are the
passages (``sentence=0``), each naming its corpus document, reference steps the sub-QA as
``"question -> answer"``, and the corpus every distinct passage. Convert a release in another layout to this one, or extend
:func:`passages`.
"""

from __future__ import annotations

from collections.abc import Iterable

from swirl.corpus import Document, PassageNames, documents_from_passages
from swirl.data.records import Record, fail, field, passage_facts, text_list
from swirl.schema import Example

LIST_KEY = "data"


def _identifier(record: Record) -> str:
    value = field(record, "id", (str, int), default=None)
    return f"cofca-{record.index}" if value is None else str(value)


def passages(record: Record) -> list[tuple[str, str]]:
    """The record's passages as (title, text) pairs."""
    data = record.data if isinstance(record.data, dict) else {}
    name = "context" if "context" in data and "passage" not in data else "passage"
    if name not in data:
        raise fail(record, "passage", "missing (a 'context' field is accepted too)")
    value = field(record, name, (str, list))
    default_title = field(record, "title", str, default=None)
    identifier = _identifier(record)
    items = [value] if isinstance(value, str) else value
    result = []
    for k, item in enumerate(items, start=1):
        if isinstance(item, str):
            title = (
                default_title if default_title and len(items) == 1 else f"{identifier} passage {k}"
            )
            result.append((title, item))
        elif isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item):
            result.append((item[0], item[1]))
        else:
            raise fail(record, name, "expected a string, a list of strings, or [title, text] pairs")
    return result


def _answers(record: Record) -> list[str]:
    if isinstance(record.data, dict) and "answers" in record.data:
        return text_list(record, "answers", field(record, "answers", list))
    answer = field(record, "answer", (str, list))
    return [answer] if isinstance(answer, str) else text_list(record, "answer", answer)


def _sub_qa(record: Record) -> list[str]:
    name = (
        "sub_questions"
        if isinstance(record.data, dict) and "sub_questions" in record.data
        else "sub_qa"
    )
    steps = []
    for item in field(record, name, list, default=[]):
        if not (
            isinstance(item, dict)
            and isinstance(item.get("question"), str)
            and isinstance(item.get("answer"), str)
        ):
            raise fail(record, name, "expected objects with 'question' and 'answer'")
        steps.append(f"{item['question']} -> {item['answer']}")
    return steps


def to_example(record: Record, *, dataset: str, names: PassageNames) -> Example:
    """One record as an example; ``names`` names the passages of the file's records so far."""
    question = field(record, "question", str)  # first: also checks that the record is an object
    return Example(
        id=_identifier(record),
        question=question.strip(),
        answers=_answers(record),
        dataset=dataset,
        task="qa",
        supporting_facts=passage_facts(passages(record), names),
        reference_steps=_sub_qa(record),
    )


def load(records: Iterable[Record], *, dataset: str = "cofca") -> list[Example]:
    names = PassageNames()
    return [to_example(record, dataset=dataset, names=names) for record in records]


def corpus(records: Iterable[Record]) -> list[Document]:
    return documents_from_passages(pair for record in records for pair in passages(record))
