"""The search tool (``<search_query>``): a local index over a corpus of ``{"id", "title", "text"}``.

Backends: BM25 (bm25s with a Snowball stemmer and English stop words; the default) and dense
nearest-article search (:mod:`swirl.tools.dense`, the paper's setting). An index lives in a
directory, built by ``swirl index`` or :func:`build_index` and reused while the corpus is unchanged::

    DIR/manifest.json   corpus fingerprint, document count, backends and their settings
    DIR/corpus.jsonl    the documents (the index is self-contained)
    DIR/bm25/           bm25s arrays and vocabulary
    DIR/dense/          embeddings.npy [documents, dim] float32 and encoder.json (with --dense)

:class:`Search` returns documents (``search``) and the text the model sees (``__call__``): one
``"Title: text"`` line per document. ``top_k`` defaults to 1, the paper's single nearest article.
BM25 returns no document that shares no term with the query.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Literal

from swirl.corpus import Document, corpus_fingerprint, format_documents, read_corpus, write_corpus
from swirl.schema import ActionKind
from swirl.tools.dense import EMBEDDED_ENCODER, DenseIndex, SentenceEncoder, top_k

Backend = Literal["bm25", "dense"]
MANIFEST = "manifest.json"
INDEX_FORMAT = 1
MAX_QUERY_CHARS = 1000


def indexed_text(document: Document) -> str:
    """The text a document is indexed under: its title, a newline, its text."""
    # The title is part of what is searched: queries often name the article.
    return f"{document.title}\n{document.text}"


class Bm25Index:
    """BM25 over stemmed, stop-word-filtered tokens (bm25s, Lucene scoring, k1=1.5, b=0.75)."""

    def __init__(self, retriever, language: str) -> None:  # retriever: bm25s.BM25
        import Stemmer

        self.retriever = retriever
        self.language = language
        self.stemmer = Stemmer.Stemmer(language)

    @classmethod
    def build(
        cls, texts: Sequence[str], language: str = "english", *, progress: bool = False
    ) -> Bm25Index:
        import bm25s
        import Stemmer

        stemmer = Stemmer.Stemmer(language)
        tokens = bm25s.tokenize(
            list(texts), stopwords="en", stemmer=stemmer, show_progress=progress
        )
        retriever = bm25s.BM25()
        retriever.index(tokens, show_progress=progress)
        return cls(retriever, language)

    def save(self, directory: Path) -> None:
        self.retriever.save(str(directory), show_progress=False)

    @classmethod
    def load(cls, directory: Path, language: str) -> Bm25Index:
        import bm25s

        return cls(bm25s.BM25.load(str(directory), show_progress=False), language)

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """(document index, BM25 score) of up to ``k`` documents with a positive score, best first
        (ties: lower index first). A query token repeated counts each time, as in bm25s."""
        import bm25s

        tokens = bm25s.tokenize(
            [query], stopwords="en", stemmer=self.stemmer, return_ids=False, show_progress=False
        )[0]
        known = [token for token in tokens if token in self.retriever.vocab_dict]
        if not known or k <= 0:
            return []
        scores = self.retriever.get_scores(known)  # [documents]
        return [(int(i), float(scores[i])) for i in top_k(scores, k) if scores[i] > 0]


class Search:
    """The ``<search_query>`` tool over one corpus and one backend index.

    ``search(query)`` -> the ``top_k`` documents (their titles go into ``Step.retrieved``);
    ``format(documents)`` -> the result text; ``__call__(query)`` does both and never raises.
    """

    kind: ClassVar[ActionKind] = "search"

    def __init__(
        self, documents: Sequence[Document], index: Bm25Index | DenseIndex, *, top_k: int = 1
    ):
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.documents = documents
        self.index = index
        self.top_k = top_k

    def search_scored(self, query: str, k: int | None = None) -> list[tuple[Document, float]]:
        """The ``k`` (default ``top_k``) best documents with their scores, best first."""
        query = query.strip()[:MAX_QUERY_CHARS]
        if not query:
            return []
        return [
            (self.documents[i], score) for i, score in self.index.search(query, k or self.top_k)
        ]

    def search(self, query: str, k: int | None = None) -> list[Document]:
        return [document for document, _score in self.search_scored(query, k)]

    def format(self, documents: Sequence[Document]) -> str:
        return format_documents(documents)

    def __call__(self, payload: str) -> str:
        if not payload.strip():
            return "error: empty search query"
        return self.format(self.search(payload))


# --- the on-disk index -----------------------------------------------------------------------


def _read_manifest(directory: Path) -> dict | None:
    try:
        return json.loads((directory / MANIFEST).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def build_index(
    documents: Sequence[Document],
    directory: str | os.PathLike[str],
    *,
    dense: bool = False,
    dense_model: str | None = None,
    language: str = "english",
    force: bool = False,
    progress: bool = False,
) -> bool:
    """Build (or reuse) the index of ``documents`` in ``directory``; return True if it was reused.

    Reused when the manifest's corpus fingerprint and settings match; a dense index is added to
    an up-to-date BM25 index without rebuilding it. A rebuild is written to a temporary sibling
    and moved into place, so an interrupted build never leaves a half-written index. A non-empty
    ``directory`` that is not a swirl index is never overwritten.
    """
    if not documents:
        raise ValueError("cannot index an empty corpus")
    directory = Path(directory)
    fingerprint = corpus_fingerprint(documents)
    encoder_name = dense_model or EMBEDDED_ENCODER
    manifest = _read_manifest(directory)
    if manifest is None and directory.exists() and any(directory.iterdir()):
        raise ValueError(f"{directory}: exists and is not a swirl index; refusing to overwrite it")
    current = (
        manifest is not None
        and not force
        and manifest.get("format") == INDEX_FORMAT
        and manifest.get("fingerprint") == fingerprint
        and manifest.get("bm25", {}).get("language") == language
    )
    if current and (not dense or (manifest.get("dense") or {}).get("model") == encoder_name):
        return True
    texts = [indexed_text(document) for document in documents]
    if current:  # only the dense part is missing or made by another encoder
        staging = directory / "dense.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        index = DenseIndex.build(texts, SentenceEncoder(dense_model), progress=progress)
        index.save(staging)
        shutil.rmtree(directory / "dense", ignore_errors=True)
        staging.rename(directory / "dense")
        manifest["dense"] = {"model": encoder_name, "dim": int(index.embeddings.shape[1])}
        (directory / MANIFEST).write_text(json.dumps(manifest, indent=1))
        return False
    staging = directory.with_name(f"{directory.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    write_corpus(staging / "corpus.jsonl", documents)
    Bm25Index.build(texts, language, progress=progress).save(staging / "bm25")
    manifest = {
        "format": INDEX_FORMAT,
        "fingerprint": fingerprint,
        "documents": len(documents),
        "bm25": {"language": language},
        "dense": None,
    }
    if dense:
        index = DenseIndex.build(texts, SentenceEncoder(dense_model), progress=progress)
        index.save(staging / "dense")
        manifest["dense"] = {"model": encoder_name, "dim": int(index.embeddings.shape[1])}
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=1))
    shutil.rmtree(directory, ignore_errors=True)
    try:
        staging.rename(directory)
    except OSError:
        # Another process built the same index meanwhile: keep theirs if it is this corpus.
        shutil.rmtree(staging, ignore_errors=True)
        if (_read_manifest(directory) or {}).get("fingerprint") != fingerprint:
            raise
    return False


def open_index(
    directory: str | os.PathLike[str], *, backend: Backend = "bm25", top_k: int = 1
) -> Search:
    """The search tool over an index directory built by :func:`build_index`."""
    directory = Path(directory)
    manifest = _read_manifest(directory)
    if manifest is None:
        raise FileNotFoundError(f"{directory}: no swirl index here (build one with `swirl index`)")
    documents = read_corpus(directory / "corpus.jsonl")
    if backend == "dense":
        if not manifest.get("dense"):
            raise ValueError(f"{directory}: this index has no dense part (rebuild with --dense)")
        return Search(documents, DenseIndex.load(directory / "dense"), top_k=top_k)
    if backend != "bm25":
        raise ValueError(f"unknown search backend {backend!r}; expected bm25 or dense")
    return Search(
        documents, Bm25Index.load(directory / "bm25", manifest["bm25"]["language"]), top_k=top_k
    )


def search_tool(
    data: str | os.PathLike[str] | Sequence[Document],
    *,
    backend: Backend = "bm25",
    top_k: int = 1,
    index_dir: str | os.PathLike[str] | None = None,
) -> Search:
    """The search tool for a dataset name/path (its corpus, see ``swirl.data.load_corpus``) or a
    list of documents, with the index cached under ``$SWIRL_CACHE/index/<fingerprint>`` unless
    ``index_dir`` is given."""
    from swirl.model import cache_dir

    if isinstance(data, (str, os.PathLike)):
        from swirl.data import load_corpus

        documents = load_corpus(data)
    else:
        documents = list(data)
    if index_dir is None:
        index_dir = cache_dir() / "index" / corpus_fingerprint(documents)[:20]
    build_index(documents, index_dir, dense=backend == "dense")
    return open_index(index_dir, backend=backend, top_k=top_k)
