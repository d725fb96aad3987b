"""Timing through pytest-benchmark that also works under ``--benchmark-disable`` (the test
suite's default), where ``benchmark.stats`` is None and the function runs once."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def fastest(
    benchmark, function: Callable[..., Any], *args: Any, rounds: int = 3
) -> tuple[Any, float]:
    """Run ``function(*args)`` through ``benchmark.pedantic``; return its last result and the
    fastest run's wall time in seconds (timed by hand, so it exists when benchmarking is off)."""
    seconds: list[float] = []

    def timed() -> Any:
        started = time.perf_counter()
        result = function(*args)
        seconds.append(time.perf_counter() - started)
        return result

    result = benchmark.pedantic(timed, rounds=rounds, iterations=1, warmup_rounds=1)
    return result, min(seconds)


def best_of(function: Callable[[], object], rounds: int) -> float:
    """The fastest of ``rounds`` calls of ``function()``, in wall seconds (for a second
    measurement in a test whose ``benchmark`` fixture is already used)."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)
