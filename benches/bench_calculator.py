"""Calculator latency: our parser + bounded SymPy evaluation vs SymPy's own ``parse_expr`` +
``evalf`` (the eval-based path we refuse to use) on 1,000 GSM8K-style step expressions from
demo-math; then the slowest of the hostile inputs of the test suite, which must stay well under a
second each.
"""

from __future__ import annotations

import time

import pytest
from sympy.parsing.sympy_parser import parse_expr

from benches.timing import fastest
from swirl.data import load_examples
from swirl.tools.calculator import Calculator

EXPRESSIONS = [
    step.split("=")[0] for e in load_examples("demo-math", limit=400) for step in e.reference_steps
][:1000]
CALCULATOR = Calculator()
HOSTILE = [
    "9**9**9**9", "10**100000", "2^(10^100)", "99999999999!", "1000!", "exp(exp(exp(10)))",
    "(" * 100 + "1" + ")" * 100, "9" * 100_000, "1+" * 499 + "1", "1.0001^100000", "170!",
    "-" * 59 + "1", "(1/7)^300 * (1/11)^300 * (1/13)^300", "sqrt(10^999)", "round(1/3, 50)",
    "min(" + "1," * 490 + "1)", "__import__('os').system('ls')",
]  # fmt: skip
results: dict[str, float] = {}


def sympy_reference(expressions: list[str]) -> list[str]:
    return [str(parse_expr(expression.replace("^", "**")).evalf(10)) for expression in expressions]


def ours(expressions: list[str]) -> list[str]:
    return [CALCULATOR(expression) for expression in expressions]


@pytest.mark.parametrize(
    "name,evaluate", [("sympy parse_expr", sympy_reference), ("swirl", ours)], ids=str
)
def test_step_latency(benchmark, name: str, evaluate) -> None:
    out, seconds = fastest(benchmark, evaluate, EXPRESSIONS)
    assert len(out) == len(EXPRESSIONS)
    results[name] = seconds / len(EXPRESSIONS)
    print(f"\n{name}: {results[name] * 1e6:.0f} us per expression")
    if len(results) == 2:
        print(
            f"swirl / sympy parse_expr speed ratio: {results['sympy parse_expr'] / results['swirl']:.1f}x"
        )


def test_hostile_inputs_worst_case(benchmark) -> None:
    def worst() -> tuple[float, str]:
        slowest = (0.0, "")
        for expression in HOSTILE:
            started = time.perf_counter()
            CALCULATOR(expression)
            slowest = max(slowest, (time.perf_counter() - started, expression[:40]))
        return slowest

    seconds, expression = benchmark.pedantic(worst, rounds=3, iterations=1)
    print(f"\nslowest hostile input: {seconds * 1e3:.1f} ms ({expression!r}...)")
