"""The Search-R1 ``/retrieve`` client against real HTTP servers on loopback: swirl's own server
over the real bm25 index of demo-qa, and small stdlib servers that misbehave on purpose (errors,
slowness, wrong replies) to exercise retries and timeouts."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from swirl.corpus import Document
from swirl.data import load_corpus
from swirl.tools import Tool
from swirl.tools.remote_search import (
    RemoteSearch,
    RemoteSearchError,
    document_from_record,
    record_from_document,
)
from swirl.tools.search import Bm25Index, Search, indexed_text
from swirl.tools.search_server import make_server


@contextmanager
def running(server: ThreadingHTTPServer) -> Iterator[str]:
    """Serve in a background thread; yield the base URL; always shut down."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def local_search() -> Search:
    documents = load_corpus("demo-qa")
    return Search(documents, Bm25Index.build([indexed_text(d) for d in documents]))


def test_client_against_the_real_bm25_server(local_search: Search) -> None:
    with running(make_server(local_search, port=0)) as url, RemoteSearch(url, top_k=2) as remote:
        assert isinstance(remote, Tool) and remote.kind == "search"
        queries = [
            "founder of Solgil Foods",
            "Nydorstan currency",
            "Who is older, Pavel Safa or Tamsin Elta?",
        ]
        batch = remote.search_batch_scored(queries)
        for query, hits in zip(queries, batch, strict=True):
            assert [(d, pytest.approx(s, rel=1e-6)) for d, s in hits] == local_search.search_scored(
                query, 2
            )
        assert remote.search("Nydorstan", k=1) == local_search.search("Nydorstan", 1)
        assert remote("Nydorstan") == local_search.format(local_search.search("Nydorstan", 2))
        assert remote("zzzzqx") == "no results"
        assert remote("  ") == "error: empty search query"
        assert remote.search_batch([]) == []
    # the endpoint URL may be given in full
    with (
        running(make_server(local_search, port=0)) as url,
        RemoteSearch(f"{url}/retrieve/") as remote,
    ):
        assert remote.search("Nydorstan")[0].title == "Nydorstan"


def test_server_speaks_the_search_r1_contract(local_search: Search) -> None:
    with running(make_server(local_search, port=0)) as url:
        reply = httpx.post(
            f"{url}/retrieve", json={"queries": ["Nydorstan"], "topk": 1, "return_scores": False}
        ).json()
        (document,) = reply["result"][0]
        assert document["contents"].startswith('"Nydorstan"\n') and document["id"] == "Nydorstan"
        reply = httpx.post(
            f"{url}/retrieve", json={"queries": ["Nydorstan"], "return_scores": True}
        ).json()
        assert set(reply["result"][0][0]) == {"document", "score"}
        for bad, message in [
            ({"queries": "x"}, "'queries' must be a list of strings"),
            ({"queries": ["x"], "topk": 0.5}, "'topk' must be an integer"),
            ({"queries": ["x"], "topk": 1000}, "'topk' must be an integer from 1 to 100"),
            ({"queries": ["x"], "return_scores": "yes"}, "'return_scores' must be true or false"),
            ({"queries": ["x"] * 2000}, "at most 1024 queries"),
        ]:
            response = httpx.post(f"{url}/retrieve", json=bad)
            assert response.status_code == 400 and message in response.json()["error"]
        assert httpx.post(f"{url}/retrieve", content=b"{not json").status_code == 400
        assert httpx.post(f"{url}/search", json={"queries": []}).status_code == 404


def test_search_r1_documents_round_trip() -> None:
    document = Document(id="7", title='A "quoted" title', text="Line one.\nLine two.")
    assert document_from_record(record_from_document(document)) == document
    # a wiki-18 record: contents only, title quoted on the first line
    assert document_from_record(
        {"id": "12", "contents": '"Paris"\nParis is the capital of France.'}
    ) == Document(id="12", title="Paris", text="Paris is the capital of France.")
    with pytest.raises(RemoteSearchError, match="neither 'contents' nor 'title' and 'text'"):
        document_from_record({"id": "1"})


class _Scripted(BaseHTTPRequestHandler):
    """Answers each POST by calling the server's ``script(request_number, body)`` ->
    (status, reply object or raw bytes, delay seconds)."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests += 1  # type: ignore[attr-defined]
        status, reply, delay = self.server.script(self.server.requests, body)  # type: ignore[attr-defined]
        time.sleep(delay)
        data = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): expected in the timeout test

    def log_message(self, format: str, *args: object) -> None:
        pass


def scripted_server(
    script: Callable[[int, dict], tuple[int, object, float]],
) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    server.script = script  # type: ignore[attr-defined]
    server.requests = 0  # type: ignore[attr-defined]
    return server


def _answer(body: dict) -> dict:
    doc = {"id": "1", "contents": '"Paris"\nParis is the capital of France.'}
    return {"result": [[{"document": doc, "score": 1.5}] for _ in body["queries"]]}


def test_retries_server_errors_then_succeeds() -> None:
    server = scripted_server(
        lambda n, body: (503, {"error": "busy"}, 0) if n <= 2 else (200, _answer(body), 0)
    )
    with running(server) as url, RemoteSearch(url, retries=3, backoff=0.01) as remote:
        assert remote.search("capital of France")[0].title == "Paris"
    assert server.requests == 3


def test_gives_up_after_the_retries() -> None:
    server = scripted_server(lambda n, body: (500, b"oops", 0))
    with running(server) as url, RemoteSearch(url, retries=2, backoff=0.01) as remote:
        with pytest.raises(RemoteSearchError, match="HTTP 500 after 3 attempts"):
            remote.search("q")
        assert remote("q").startswith("error: search server unavailable (")
    assert server.requests == 6


def test_client_errors_are_not_retried() -> None:
    server = scripted_server(lambda n, body: (400, {"error": "bad topk"}, 0))
    with (
        running(server) as url,
        RemoteSearch(url, retries=3, backoff=0.01) as remote,
        pytest.raises(RemoteSearchError, match=r'HTTP 400: \{"error": "bad topk"\}'),
    ):
        remote.search("q")
    assert server.requests == 1


def test_timeouts_are_retried_and_reported() -> None:
    server = scripted_server(lambda n, body: (200, _answer(body), 1.0 if n == 1 else 0))
    with running(server) as url, RemoteSearch(url, timeout=0.2, retries=1, backoff=0.01) as remote:
        assert remote.search("q")[0].title == "Paris"  # first attempt timed out, second answered
    slow = scripted_server(lambda n, body: (200, _answer(body), 1.0))
    with running(slow) as url, RemoteSearch(url, timeout=0.2, retries=1, backoff=0.01) as remote:
        assert (
            remote("q")
            == f"error: search server unavailable ({url}/retrieve: timed out after 2 attempts)"
        )


def test_unreachable_server() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    port = server.server_address[1]
    server.server_close()  # nothing listens on this port now
    with (
        RemoteSearch(f"http://127.0.0.1:{port}", retries=1, backoff=0.01) as remote,
        pytest.raises(RemoteSearchError, match=r"cannot connect \(\w+\) after 2 attempts"),
    ):
        remote.search("q")


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ({"result": []}, "expected {'result': \\[one list per query\\]}"),
        ({"answer": 1}, "expected {'result'"),
        ({"result": ["x"]}, "a query's result is not a list"),
        ({"result": [[{"document": {"id": 1}}]]}, "neither 'contents' nor 'title' and 'text'"),
        (b"<html>", "reply is not JSON"),
    ],
)
def test_replies_outside_the_contract(reply: object, message: str) -> None:
    server = scripted_server(lambda n, body: (200, reply, 0))
    with (
        running(server) as url,
        RemoteSearch(url, retries=0) as remote,
        pytest.raises(RemoteSearchError, match=message),
    ):
        remote.search("q")


def test_documents_without_scores_are_accepted() -> None:
    """A server may ignore return_scores and send bare documents."""
    server = scripted_server(
        lambda n, body: (200, {"result": [[{"id": "1", "contents": '"T"\nx'}]]}, 0)
    )
    with running(server) as url, RemoteSearch(url) as remote:
        assert remote.search_batch_scored(["q"]) == [
            [(Document(id="1", title="T", text="x"), None)]
        ]
