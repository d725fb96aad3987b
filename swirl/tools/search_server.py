"""Serve a local index over HTTP with the Search-R1 ``/retrieve`` contract (see
:mod:`swirl.tools.remote_search`), so remote workers (or any Search-R1 client) can share one index.

Standard library only (``http.server``, a thread per connection): meant for a lab network or
loopback, not the open internet. Requests are validated and bounded: at most
:data:`MAX_QUERIES` queries of :data:`MAX_QUERY_CHARS` characters, ``topk`` from 1 to
:data:`MAX_TOP_K`, bodies up to :data:`MAX_BODY_BYTES`; a bad request gets HTTP 400 with
``{"error": "..."}``.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from swirl.tools.remote_search import record_from_document
from swirl.tools.search import Search

MAX_QUERIES = 1024
MAX_QUERY_CHARS = 1000
MAX_TOP_K = 100
MAX_BODY_BYTES = 4 << 20


def _parse_request(body: bytes, default_top_k: int) -> tuple[list[str], int, bool]:
    """(queries, topk, return_scores) of a request body; ValueError says what is wrong."""
    try:
        request = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError("body is not JSON") from None
    if not isinstance(request, dict):
        raise ValueError("body must be a JSON object")
    queries = request.get("queries")
    if not isinstance(queries, list) or not all(isinstance(q, str) for q in queries):
        raise ValueError("'queries' must be a list of strings")
    if len(queries) > MAX_QUERIES:
        raise ValueError(f"at most {MAX_QUERIES} queries per request")
    top_k = request.get("topk") or default_top_k
    if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= MAX_TOP_K:
        raise ValueError(f"'topk' must be an integer from 1 to {MAX_TOP_K}")
    return_scores = request.get("return_scores", False)
    if not isinstance(return_scores, bool):
        raise ValueError("'return_scores' must be true or false")
    return [q[:MAX_QUERY_CHARS] for q in queries], top_k, return_scores


def make_server(search: Search, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """An HTTP server answering ``POST /retrieve`` from ``search`` (port 0 picks a free port;
    the bound address is ``server.server_address``). Call ``serve_forever()`` to run it."""
    lock = threading.Lock()  # bm25s and torch calls are not promised to be thread-safe

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status: int, payload: Any) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            if self.path.rstrip("/") != "/retrieve":
                self._reply(404, {"error": f"no endpoint {self.path}; POST /retrieve"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self._reply(413, {"error": f"body over {MAX_BODY_BYTES} bytes"})
                return
            try:
                queries, top_k, return_scores = _parse_request(
                    self.rfile.read(length), search.top_k
                )
            except ValueError as error:
                self._reply(400, {"error": str(error)})
                return
            with lock:
                hits = [search.search_scored(query, top_k) for query in queries]
            if return_scores:
                result = [
                    [{"document": record_from_document(d), "score": s} for d, s in h] for h in hits
                ]
            else:
                result = [[record_from_document(d) for d, _ in h] for h in hits]
            self._reply(200, {"result": result})

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per request would drown the terminal of a busy server

    return ThreadingHTTPServer((host, port), Handler)
