"""Native tag parser vs the re-based Python reference on 100k realistic turns.

Prints throughput (MB/s of UTF-8 text, one core) of each and the ratio. Goal: native >= 5x the
reference and >= 500 MB/s.
"""

from __future__ import annotations

import pytest

from benches.corpus import make_corpus
from swirl.tags import parse_action_py, parse_actions

CORPUS = make_corpus(100_000)
MEGABYTES = sum(len(text.encode()) for text in CORPUS) / 1e6
results: dict[str, float] = {}


def reference_parse(texts: list[str]) -> list:
    return [parse_action_py(text) for text in texts]


@pytest.mark.parametrize(
    "name,parse", [("reference", reference_parse), ("native", parse_actions)], ids=str
)
def test_parse_throughput(benchmark, name: str, parse) -> None:
    out = benchmark.pedantic(parse, args=(CORPUS,), rounds=5, iterations=1, warmup_rounds=1)
    assert len(out) == len(CORPUS)
    results[name] = benchmark.stats.stats.min
    print(f"\n{name}: {MEGABYTES / results[name]:.0f} MB/s over {MEGABYTES:.1f} MB, 100k turns")
    if len(results) == 2:
        print(f"native / reference speed ratio: {results['reference'] / results['native']:.1f}x")
