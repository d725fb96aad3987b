"""A search tool backed by a remote retrieval server speaking the Search-R1 ``/retrieve`` contract,
so an existing retriever (a FAISS/E5 Wikipedia server, a BM25 server) plugs into swirl.

The contract (Search-R1's ``retrieval_server.py``)::

    POST /retrieve   {"queries": ["q1", ...], "topk": 3, "return_scores": true}
    200              {"result": [[{"document": DOC, "score": 0.83}, ...], ...]}   # one list per query
                     {"result": [[DOC, ...], ...]}                                # return_scores false

where ``DOC`` is a corpus record: ``{"id", "contents"}`` with ``contents = '"Title"\\ntext'`` (the
wiki-18 corpus), possibly with ``"title"`` and ``"text"`` too. :func:`document_from_record` reads
both; :func:`record_from_document` writes all four (swirl's own server,
:mod:`swirl.tools.search_server`).

Timeouts, connection errors, HTTP 429 and 5xx are retried with exponential backoff; any other 4xx
or a malformed reply fails at once. ``search``/``search_batch`` raise :class:`RemoteSearchError`;
the tool call (``__call__``) returns ``"error: ..."`` instead, like every tool.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar

import httpx

from swirl.corpus import Document, format_documents
from swirl.schema import ActionKind


class RemoteSearchError(RuntimeError):
    """The retrieval server could not be reached or answered outside the contract."""


def record_from_document(document: Document) -> dict[str, str]:
    return {
        "id": document.id,
        "contents": f'"{document.title}"\n{document.text}',
        "title": document.title,
        "text": document.text,
    }


def document_from_record(record: Any) -> Document:
    """A Search-R1 document (``{"id", "contents"}``, optionally ``title``/``text``) as a Document."""
    if not isinstance(record, dict):
        raise RemoteSearchError(f"unexpected document {str(record)[:100]!r}: expected an object")
    identifier = str(record.get("id", ""))
    if isinstance(record.get("title"), str) and isinstance(record.get("text"), str):
        return Document(id=identifier, title=record["title"], text=record["text"])
    contents = record.get("contents")
    if not isinstance(contents, str):
        raise RemoteSearchError(
            f"document {identifier!r} has neither 'contents' nor 'title' and 'text'"
        )
    title, _, text = contents.partition("\n")
    return Document(id=identifier, title=title.strip().strip('"'), text=text.strip())


class RemoteSearch:
    """The ``<search_query>`` tool over a Search-R1-compatible server at ``url``.

    ``url`` is the server root or its ``/retrieve`` endpoint. ``timeout`` is seconds per attempt;
    a failed attempt is retried up to ``retries`` times, waiting ``backoff * 2**attempt`` seconds.
    """

    kind: ClassVar[ActionKind] = "search"

    def __init__(
        self,
        url: str,
        *,
        top_k: int = 1,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        url = url.rstrip("/")
        self.url = url if url.endswith("/retrieve") else f"{url}/retrieve"
        self.top_k = top_k
        self.retries = retries
        self.backoff = backoff
        self._client = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RemoteSearch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, payload: dict[str, Any]) -> Any:
        last_problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = self._client.post(self.url, json=payload)
            except httpx.TimeoutException:
                last_problem = "timed out"
                continue
            except httpx.TransportError as error:
                last_problem = f"cannot connect ({error.__class__.__name__})"
                continue
            if response.status_code == 429 or response.status_code >= 500:
                last_problem = f"HTTP {response.status_code}"
                continue
            if response.status_code != 200:
                raise RemoteSearchError(
                    f"{self.url}: HTTP {response.status_code}: {response.text[:200]}"
                )
            try:
                return response.json()
            except ValueError:
                raise RemoteSearchError(
                    f"{self.url}: reply is not JSON: {response.text[:100]!r}"
                ) from None
        raise RemoteSearchError(f"{self.url}: {last_problem} after {self.retries + 1} attempts")

    def search_batch_scored(
        self, queries: Sequence[str], k: int | None = None
    ) -> list[list[tuple[Document, float | None]]]:
        """For each query, its documents and scores (None if the server sent none), best first."""
        if not queries:
            return []
        reply = self._post(
            {"queries": list(queries), "topk": k or self.top_k, "return_scores": True}
        )
        results = reply.get("result") if isinstance(reply, dict) else None
        if not isinstance(results, list) or len(results) != len(queries):
            raise RemoteSearchError(
                f"{self.url}: expected {{'result': [one list per query]}}, got {str(reply)[:200]!r}"
            )
        batch = []
        for hits in results:
            if not isinstance(hits, list):
                raise RemoteSearchError(
                    f"{self.url}: a query's result is not a list: {str(hits)[:100]!r}"
                )
            scored = []
            for hit in hits:
                if isinstance(hit, dict) and "document" in hit:
                    score = hit.get("score")
                    scored.append(
                        (
                            document_from_record(hit["document"]),
                            float(score) if score is not None else None,
                        )
                    )
                else:  # a server that ignores return_scores
                    scored.append((document_from_record(hit), None))
            batch.append(scored)
        return batch

    def search_batch(self, queries: Sequence[str], k: int | None = None) -> list[list[Document]]:
        """Documents for many queries in one request (the contract is batched)."""
        return [[document for document, _ in hits] for hits in self.search_batch_scored(queries, k)]

    def search(self, query: str, k: int | None = None) -> list[Document]:
        return self.search_batch([query], k)[0]

    def format(self, documents: Sequence[Document]) -> str:
        return format_documents(documents)

    def __call__(self, payload: str) -> str:
        if not payload.strip():
            return "error: empty search query"
        try:
            return self.format(self.search(payload.strip()))
        except RemoteSearchError as error:
            return f"error: search server unavailable ({error})"
