"""Reading raw dataset files record by record, with errors that name file, record and field.

Every loader in ``swirl.data`` reads through :func:`read_records` and pulls fields with
:func:`field`, so a malformed file fails with one line such as::

    hotpot_dev.json: record 3 (_id '5a8b57f2'): field 'supporting_facts': expected a list of
    [title, sentence index] pairs, got str
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from swirl.corpus import PassageNames
from swirl.schema import SupportingFact


class DataFormatError(ValueError):
    """A dataset file does not have the expected format; the message says where and why."""


@dataclass(frozen=True)
class Record:
    """One raw record and where it came from (for error messages)."""

    data: Any
    where: str  # "file.jsonl:12" or "file.json: record 3"
    index: int  # 0-based position in the file


def _json_error(path: Path, raw: bytes) -> DataFormatError:
    """Locate a JSON syntax error by line and column (msgspec only reports a byte offset)."""
    try:
        json.loads(raw)
    except json.JSONDecodeError as error:
        return DataFormatError(f"{path}:{error.lineno}:{error.colno}: invalid JSON: {error.msg}")
    except UnicodeDecodeError as error:
        return DataFormatError(f"{path}: not UTF-8 text: {error.reason} at byte {error.start}")
    return DataFormatError(f"{path}: invalid JSON")


def load_json(path: str | os.PathLike[str]) -> Any:
    """Decode a whole JSON file (fast path msgspec; syntax errors located by line/column)."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise _json_error(path, raw) from None


def read_records(path: str | os.PathLike[str], *, list_key: str | None = None) -> Iterator[Record]:
    """Yield the records of a ``.jsonl`` file (one object a line) or a ``.json`` list.

    ``list_key`` names the field holding the list when a ``.json`` file is an object
    (BeerQA: ``{"data": [...]}``). Blank JSONL lines are skipped.
    """
    path = Path(path)
    if path.suffix == ".jsonl":
        with path.open("rb") as handle:
            index = 0
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    data = msgspec.json.decode(line)
                except msgspec.DecodeError as error:
                    raise DataFormatError(f"{path}:{number}: invalid JSON: {error}") from None
                yield Record(data, f"{path}:{number}", index)
                index += 1
        return
    document = load_json(path)
    if list_key is not None and isinstance(document, dict):
        if list_key not in document:
            raise DataFormatError(f"{path}: expected a top-level field {list_key!r}")
        document = document[list_key]
    if not isinstance(document, list):
        expected = f"a list (or an object with {list_key!r})" if list_key else "a list of records"
        raise DataFormatError(f"{path}: expected {expected}, got {_type_name(document)}")
    for index, data in enumerate(document):
        yield Record(data, f"{path}: record {index}", index)


def _type_name(value: Any) -> str:
    return {dict: "object", list: "list", str: "str", bool: "bool", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def fail(record: Record, field_name: str | None, problem: str) -> DataFormatError:
    """An error at ``record`` (and ``field_name``), naming its id when the record has one."""
    label = record.where
    if isinstance(record.data, dict):
        for key in ("_id", "id"):
            if isinstance(record.data.get(key), (str, int)):
                label += f" ({key} {record.data[key]!r})"
                break
    if field_name is not None:
        label += f": field {field_name!r}"
    return DataFormatError(f"{label}: {problem}")


_MISSING = object()


def field(record: Record, name: str, kind: type | tuple[type, ...], default: Any = _MISSING) -> Any:
    """``record.data[name]``, checked to be of ``kind``; missing -> ``default`` or an error."""
    if not isinstance(record.data, dict):
        raise fail(record, None, f"expected an object, got {_type_name(record.data)}")
    value = record.data.get(name, _MISSING)
    if value is _MISSING or (value is None and default is not _MISSING):
        if default is _MISSING:
            raise fail(record, name, "missing")
        return default
    # bool is an int subclass: a JSON true is never a number here.
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        wanted = " or ".join(_type_name(k()) if k is not type(None) else "null" for k in kinds)
        raise fail(record, name, f"expected {wanted}, got {_type_name(value)}")
    return value


def text_list(record: Record, name: str, value: Any, what: str = "a list of strings") -> list[str]:
    """Check that ``value`` (the content of field ``name``) is a list of strings."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise fail(record, name, f"expected {what}")
    return value


def passage_facts(
    passages: Sequence[tuple[str, str]],
    names: PassageNames,
    supporting: Sequence[bool] | None = None,
) -> list[SupportingFact]:
    """Whole-paragraph supporting facts (``sentence=0``) of one record's (title, text) passages,
    each naming its corpus document, once per document.

    Every passage is named, supporting or not, so that ``names`` (shared by all records of a file,
    in order) gives the ids the corpus gives. ``supporting[k]`` says whether passage k is evidence
    (default: all are).
    """
    ids = [names.name(title, text)[0] for title, text in passages]
    evidence = [True] * len(passages) if supporting is None else supporting
    facts = (
        SupportingFact(title=title, sentence=0, document=identifier)
        for (title, _), identifier, keep in zip(passages, ids, evidence, strict=True)
        if keep
    )
    return list(dict.fromkeys(facts))
