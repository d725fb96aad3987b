"""Fingerprints of the data a result was measured on: SHA-256 over the canonical encoding of a
split's questions, and of the search corpus (:func:`swirl.corpus.corpus_fingerprint`).

Two evaluations with equal fingerprints saw the same questions (ids, texts, gold answers,
supporting facts, annotations) and searched the same documents; a generator that changed in
between shows as a changed fingerprint, so results made on different data are never compared.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import msgspec

from swirl.corpus import Document, corpus_fingerprint
from swirl.schema import Example


def canonical_example(example: Example) -> bytes:
    """One question as canonical JSON: a fixed set of fields, object keys sorted, so the
    encoding changes only when the question does (not when a new schema field appears)."""
    projection = {
        "id": example.id,
        "question": example.question,
        "answers": example.answers,
        "task": example.task,
        "supporting_facts": [[f.title, f.sentence, f.document] for f in example.supporting_facts],
        "reference_steps": example.reference_steps,
        "metadata": example.metadata,
    }
    return msgspec.json.encode(projection, order="sorted")


def questions_fingerprint(examples: Iterable[Example]) -> str:
    """SHA-256 (hex) over the questions in order, one canonical JSON line each."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(canonical_example(example))
        digest.update(b"\n")
    return digest.hexdigest()


def data_fingerprints(
    examples: Sequence[Example], corpus: Sequence[Document] | None
) -> dict[str, str]:
    """``{"questions": ..., "corpus": ...}`` (no ``corpus`` for a task without documents)."""
    prints = {"questions": questions_fingerprint(examples)}
    if corpus is not None:
        prints["corpus"] = corpus_fingerprint(corpus)
    return prints


def evaluation_fingerprints(
    examples: Sequence[Example],
    data: str,
    *,
    split: str,
    data_format: str | None = None,
    retriever_url: str | None = None,
) -> dict[str, str]:
    """The fingerprints of an evaluation of ``examples`` from dataset ``data``: its questions,
    and the corpus its search tool indexes (a remote retriever is named by its URL instead; a
    task without search has no corpus)."""
    if not any(example.task == "qa" for example in examples):
        return data_fingerprints(examples, None)
    if retriever_url:
        return {**data_fingerprints(examples, None), "retriever": retriever_url}
    from swirl.data.registry import load_corpus

    return data_fingerprints(examples, load_corpus(data, split=split, format=data_format))
