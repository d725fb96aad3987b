"""BM25 query latency: the bm25s index vs the brute-force reference (``swirl.tools.bm25_reference``)
on the demo-qa:8000 world (about 11k articles, the size of a HotPotQA dev corpus) with 200
multi-hop questions as queries, top-1.

Prints milliseconds per query for each and the speed ratio, plus the index build time. Goal: the
index answers in about a millisecond, far below the cost of generating one model turn.
"""

from __future__ import annotations

import time

import pytest

from benches.timing import fastest
from swirl.data import load_corpus, load_examples
from swirl.tools.bm25_reference import Bm25Reference
from swirl.tools.search import Bm25Index, indexed_text

DOCUMENTS = load_corpus("demo-qa:8000")
TEXTS = [indexed_text(d) for d in DOCUMENTS]
QUERIES = [e.question for e in load_examples("demo-qa:8000", limit=200)]
_started = time.perf_counter()
INDEX = Bm25Index.build(TEXTS)
BUILD_SECONDS = time.perf_counter() - _started
REFERENCE = Bm25Reference(TEXTS)
results: dict[str, float] = {}


def _run(search, queries: list[str]) -> list:
    return [search(query, 1) for query in queries]


@pytest.mark.parametrize(
    "name,search,queries",
    [("reference", REFERENCE.search, QUERIES[:40]), ("bm25s", INDEX.search, QUERIES)],
    ids=["reference", "bm25s"],
)
def test_query_latency(benchmark, name: str, search, queries: list[str]) -> None:
    out, seconds = fastest(benchmark, _run, search, queries)
    assert len(out) == len(queries) and all(out)
    results[name] = seconds / len(queries)
    print(f"\n{name}: {results[name] * 1e3:.3f} ms per query over {len(DOCUMENTS)} documents")
    if name == "bm25s":
        print(f"bm25s index build: {BUILD_SECONDS:.2f} s for {len(DOCUMENTS)} documents")
    if len(results) == 2:
        print(f"bm25s / reference speed ratio: {results['reference'] / results['bm25s']:.0f}x")
