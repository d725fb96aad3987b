"""Strata of questions: the question kind (``metadata["type"]``) crossed with the number of hops
(``metadata["hops"]``), the cells every result is also reported in."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from swirl.schema import Example

ALL = "all"  # the stratum of a question whose dataset annotates neither kind nor hops


def stratum_of(example: Example) -> str:
    """``"bridge 2-hop"``, ``"bridge"`` (no hop count), ``"2-hop"`` (no kind) or :data:`ALL`."""
    kind = example.metadata.get("type")
    hops = example.metadata.get("hops")
    parts = [str(kind)] if kind is not None else []
    if hops is not None:
        parts.append(f"{hops}-hop")
    return " ".join(parts) or ALL


def stratum_counts(examples: Iterable[Example]) -> dict[str, int]:
    """Questions per stratum, strata sorted by name."""
    return dict(sorted(Counter(stratum_of(e) for e in examples).items()))
