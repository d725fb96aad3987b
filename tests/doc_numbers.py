"""Checks that the numbers a document quotes come from the committed files it names.

A document marks each region whose numbers must have a source:

    <!-- numbers from: results/study/study.md results/*/tuning.md -->
    ... prose and tables ...
    <!-- /numbers -->

Source paths are globs relative to the document's folder. Every number in the region outside
code (fenced blocks and inline code: commands and config values are not results) must equal, at
the precision the document prints it, some number in the sources, up to sign (a difference
may be quoted as a gap). A percentage may also be a source's fraction (57% of 0.571).
Numbers inside names (``seed-100``, ``1-hop``, ``SmolLM2``, dates) are not quantities and are
skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

REGION = re.compile(r"<!-- numbers from: (?P<sources>.*?) -->(?P<body>.*?)<!-- /numbers -->", re.S)
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)
# A quantity: not glued to a word, a hyphenated name or another number on either side.
QUANTITY = re.compile(
    r"(?<![\w.\-/=])[+\-\u2212]?"
    r"(?P<value>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?(?:e[-+]?\d+)?)(?P<percent>%?)"
    r"(?![\w\-]|\.\d)"
)
ANY_NUMBER = re.compile(r"\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class Unsourced:
    """A number of ``document`` (at ``line``) found in none of its region's sources."""

    document: Path
    line: int
    text: str


def _decimals(literal: str) -> int:
    return len(literal.split(".")[1]) if "." in literal and "e" not in literal else 0


def _printed(value: float, decimals: int) -> str:
    return f"{abs(value):.{decimals}f}"


class Sources:
    """Every number in a set of files, indexed by how it prints at 0-6 decimals."""

    def __init__(self, paths: Iterable[Path]) -> None:
        self.values: set[float] = set()
        for path in paths:
            for match in ANY_NUMBER.finditer(path.read_text(encoding="utf-8", errors="replace")):
                self.values.add(float(match.group()))
        self._printed = {
            decimals: {_printed(v, decimals) for v in self.values} for decimals in range(7)
        }

    def has(self, literal: str, percent: bool) -> bool:
        """Whether ``literal`` (as the document prints it) is a source number at its precision."""
        literal = literal.replace(",", "")
        if "e" in literal:
            return any(abs(v - float(literal)) <= 1e-12 * abs(v) for v in self.values)
        decimals = _decimals(literal)
        if decimals > 6:
            return float(literal) in self.values
        if _printed(float(literal), decimals) in self._printed[decimals]:
            return True
        # A percentage printed with d decimals is a fraction printed with d + 2.
        return (
            percent
            and decimals + 2 <= 6
            and (_printed(float(literal) / 100, decimals + 2) in self._printed[decimals + 2])
        )


def regions(document: Path) -> Iterator[tuple[list[Path], str, int]]:
    """(source files, region text without code, first line number) of each marked region;
    raises ``FileNotFoundError`` naming a source glob that matches no file."""
    text = document.read_text(encoding="utf-8")
    for region in REGION.finditer(text):
        sources: list[Path] = []
        for pattern in region.group("sources").split():
            found = sorted(document.parent.glob(pattern))
            if not found:
                raise FileNotFoundError(f"{document}: numbers source {pattern!r} matches no file")
            sources.extend(found)
        # Code is blanked, not removed, so that line numbers stay right.
        body = CODE.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), region.group("body"))
        yield sources, body, text.count("\n", 0, region.start("body")) + 1


def unsourced_numbers(document: Path) -> tuple[int, list[Unsourced]]:
    """(how many numbers the document's marked regions quote, those with no source)."""
    checked, missing = 0, []
    for paths, body, first_line in regions(document):
        sources = Sources(paths)
        for match in QUANTITY.finditer(body):
            checked += 1
            if not sources.has(match.group("value"), bool(match.group("percent"))):
                line = first_line + body.count("\n", 0, match.start())
                missing.append(Unsourced(document, line, match.group()))
    return checked, missing
