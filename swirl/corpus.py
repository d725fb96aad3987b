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


class PassageNames:
    """Corpus ids of (title, text) passages (text stripped), given in order of first appearance:
    the title for its first text, ``"title#k"`` for its k-th distinct text (MuSiQue and BeerQA
    repeat titles with different paragraphs).

    The corpus (:func:`documents_from_passages`) and a loader's supporting facts each name the
    same records' passages in the same order, so a fact names the very document the corpus holds.
    """

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str], str] = {}
        self._texts_per_title: dict[str, int] = {}

    def name(self, title: str, text: str) -> tuple[str, bool]:
        """The id of passage ``(title, text)``, and whether this is its first appearance."""
        key = (title, text.strip())
        known = self._ids.get(key)
        if known is not None:
            return known, False
        count = self._texts_per_title.get(title, 0) + 1
        self._texts_per_title[title] = count
        identifier = title if count == 1 else f"{title}#{count}"
        self._ids[key] = identifier
        return identifier, True


def documents_from_passages(passages: Iterable[tuple[str, str]]) -> list[Document]:
    """Deduplicate (title, text) passages into documents (text stripped), first occurrence first,
    with the ids of :class:`PassageNames`."""
    names = PassageNames()
    documents: list[Document] = []
    for title, text in passages:
        identifier, first = names.name(title, text)
        if first:
            documents.append(Document(id=identifier, title=title, text=text.strip()))
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
