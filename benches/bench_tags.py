"""Native tag parser vs the re-based Python reference on 100k realistic turns (one core).

Two pairs, each printing throughput (MB/s of UTF-8 text) and the native/reference ratio:

- ``scan``: kinds, error codes and spans of every turn (``scan_actions`` vs ``scan_action_py``):
  the parsing itself. Goal: native >= 5x the reference and >= 500 MB/s.
- ``objects``: an ``Action`` Struct per turn (``parse_actions`` vs ``parse_action_py``): both
  sides also allocate the payload and thought strings and the Struct, a cost they share.
"""

from __future__ import annotations

import pytest

from benches.corpus import make_corpus
from swirl.tags import parse_action_py, parse_actions, scan_action_py, scan_actions

CORPUS = make_corpus(100_000)
MEGABYTES = sum(len(text.encode()) for text in CORPUS) / 1e6
results: dict[tuple[str, str], float] = {}

CASES = {
    ("scan", "reference"): lambda texts: [scan_action_py(text) for text in texts],
    ("scan", "native"): scan_actions,
    ("objects", "reference"): lambda texts: [parse_action_py(text) for text in texts],
    ("objects", "native"): parse_actions,
}


@pytest.mark.parametrize("what,impl", list(CASES), ids=lambda v: str(v))
def test_parse_throughput(benchmark, what: str, impl: str) -> None:
    out = benchmark.pedantic(
        CASES[what, impl], args=(CORPUS,), rounds=5, iterations=1, warmup_rounds=1
    )
    assert len(out) == len(CORPUS)
    results[what, impl] = benchmark.stats.stats.min
    print(f"\n{what} {impl}: {MEGABYTES / results[what, impl]:.0f} MB/s ({MEGABYTES:.1f} MB)")
    if (what, "reference") in results and (what, "native") in results:
        ratio = results[what, "reference"] / results[what, "native"]
        print(f"{what}: native / reference speed ratio {ratio:.1f}x")
