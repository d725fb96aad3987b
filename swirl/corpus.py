"""Documents a search tool can return, and their on-disk form: JSONL of ``{"id", "title", "text"}``.

Dataset loaders (``swirl.data``) produce corpora, the search index (``swirl.tools.search``) consumes
them; :func:`corpus_fingerprint` lets a cached index tell whether its corpus changed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import msgspec

from swirl.jsonl import read_jsonl, write_jsonl


class Document(msgspec.Struct, frozen=True):
    """One article (or paragraph) of a corpus; ``id`` is unique within its corpus."""

    id: str
    title: str
    text: str


def read_corpus(path: str | os.PathLike[str]) -> list[Document]:
    """Read a corpus JSONL; errors name the file and line. Ids must be unique, and there must be
    at least one document (an empty corpus is a mistake upstream, e.g. a test split's export)."""
    documents = read_jsonl(path, Document)
    if not documents:
        raise ValueError(f"{path}: no documents (an empty corpus file)")
    seen: set[str] = set()
    for number, document in enumerate(documents, start=1):
        if document.id in seen:
            raise ValueError(f"{path}: document {number}: duplicate id {document.id!r}")
        seen.add(document.id)
    return documents


def write_corpus(path: str | os.PathLike[str], documents: Iterable[Document]) -> int:
    """Write a corpus JSONL (overwriting); return the number of documents."""
    return write_jsonl(path, documents)


def corpus_fingerprint(documents: Iterable[Document]) -> str:
    """SHA-256 over every document's fields, in order: equal iff the corpora are identical."""
    digest = hashlib.sha256()
    encoder = msgspec.json.Encoder()
    for document in documents:
        digest.update(encoder.encode(document))
        digest.update(b"\n")
    return digest.hexdigest()


def documents_from_passages(passages: Iterable[tuple[str, str]]) -> list[Document]:
    """Deduplicate (title, text) passages into documents (text stripped), first occurrence first.

    Ids are the title when a title has one text, else ``"title#k"`` for its k-th distinct text
    (MuSiQue and BeerQA repeat titles with different paragraphs).
    """
    documents: list[Document] = []
    seen: set[tuple[str, str]] = set()
    per_title: dict[str, int] = {}
    for title, raw_text in passages:
        text = raw_text.strip()
        if (title, text) in seen:
            continue
        seen.add((title, text))
        count = per_title.get(title, 0)
        per_title[title] = count + 1
        documents.append(
            Document(id=title if count == 0 else f"{title}#{count + 1}", title=title, text=text)
        )
    return documents


def is_corpus_file(path: str | os.PathLike[str]) -> bool:
    """True when the first record of a JSONL file has exactly the corpus fields."""
    path = Path(path)
    if path.suffix != ".jsonl":
        return False
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                try:
                    record = msgspec.json.decode(line)
                except msgspec.DecodeError:
                    return False
                return isinstance(record, dict) and set(record) == {"id", "title", "text"}
    return False


def format_documents(documents: Iterable[Document]) -> str:
    """A search result as the model sees it: one ``"Title: text"`` line per document, or
    ``"no results"``. Truncation to a token budget is the environment's job."""
    lines = [f"{document.title}: {document.text}" for document in documents]
    return "\n".join(lines) if lines else "no results"
