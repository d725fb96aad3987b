"""The numbers the study documents quote come from committed reports (issue 18: every number in
a doc from a committed report or a script in the repo). A region of a document marked
``<!-- numbers from: ... -->`` may quote only numbers found in the files it names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from doc_numbers import unsourced_numbers

DOCS = Path(__file__).resolve().parent.parent / "docs"
CHECKED = [DOCS / "study-demo-hops.md", DOCS / "study-demo-qa.md"]


@pytest.mark.parametrize("document", CHECKED, ids=lambda p: p.name)
def test_every_marked_number_of_the_document_is_in_its_committed_sources(document: Path) -> None:
    checked, missing = unsourced_numbers(document)
    assert checked > 0, f"{document.name} marks no numbers to check"
    assert not missing, "\n".join(f"{m.document.name}:{m.line}: {m.text}" for m in missing)


def _write(folder: Path, doc: str, **sources: str) -> Path:
    for name, text in sources.items():
        (folder / f"{name}.md").write_text(text)
    path = folder / "doc.md"
    path.write_text(doc)
    return path


def test_the_check_accepts_rounded_signed_and_percent_forms_and_skips_code_and_names(
    tmp_path: Path,
) -> None:
    doc = _write(
        tmp_path,
        "intro 0.999 is not checked\n"
        "<!-- numbers from: report.md -->\n"
        "| arm | em |\n|---|---|\n| swirl | 0.116 |\n"
        "a gap of -0.062 (p = 0.031), 57% informative, 2,143 s, seed-100, 1-hop, `--lr 9e-9`\n"
        "```\nswirl eval --limit 777\n```\n"
        "<!-- /numbers -->\n",
        report="em 0.1164 diff +0.0621 p 0.0312 frac 0.571 seconds 2143.28",
    )
    checked, missing = unsourced_numbers(doc)
    assert missing == []
    assert checked == 5  # 0.116, -0.062, 0.031, 57%, 2143, and nothing in names or code


def test_the_check_names_a_number_with_no_source_and_its_line(tmp_path: Path) -> None:
    doc = _write(
        tmp_path,
        "title\n<!-- numbers from: a.md b.md -->\nswirl 0.116, sft 0.133\n<!-- /numbers -->\n",
        a="0.116",
        b="sft 0.131",
    )
    _, missing = unsourced_numbers(doc)
    assert [(m.line, m.text) for m in missing] == [(3, "0.133")]


def test_a_source_that_is_not_there_is_an_error_naming_it(tmp_path: Path) -> None:
    doc = _write(tmp_path, "<!-- numbers from: results/*.md -->\n0.1\n<!-- /numbers -->\n")
    with pytest.raises(FileNotFoundError, match=re.escape("results/*.md")):
        unsourced_numbers(doc)
