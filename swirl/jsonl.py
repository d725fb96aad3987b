"""Streaming JSONL of msgspec Structs: the on-disk format of every pipeline stage.

Writers append and flush per record, so a crash or Ctrl-C keeps every finished record; a torn
last line (a record cut off mid-write) is dropped when the file is reopened for appending.
Readers name the file and line of a corrupt record, or skip and count bad lines on request.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Generic, TypeVar

import msgspec

T = TypeVar("T")


class JsonlError(ValueError):
    """A line of a JSONL file is not a valid record; the message names file and line."""

    def __init__(self, path: str | os.PathLike[str], line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path = str(path)
        self.line = line
        self.reason = reason


class JsonlReader(Generic[T]):
    """Iterate the records of one JSONL file, decoded and validated as ``type``.

    With ``skip_bad=True`` corrupt lines are skipped; ``skipped`` counts them and ``bad_lines``
    keeps their line numbers. Blank lines are ignored.
    """

    def __init__(self, path: str | os.PathLike[str], type: type[T], *, skip_bad: bool = False):
        self.path = Path(path)
        self.type = type
        self.skip_bad = skip_bad
        self.skipped = 0
        self.bad_lines: list[int] = []
        self._decoder = msgspec.json.Decoder(type)

    def __iter__(self) -> Iterator[T]:
        with self.path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    yield self._decoder.decode(line)
                except (msgspec.DecodeError, msgspec.ValidationError) as error:
                    if not self.skip_bad:
                        raise JsonlError(self.path, number, str(error)) from None
                    self.skipped += 1
                    self.bad_lines.append(number)


def read_jsonl(path: str | os.PathLike[str], type: type[T], *, skip_bad: bool = False) -> list[T]:
    """Read a whole JSONL file into a list (see :class:`JsonlReader` for streaming)."""
    return list(JsonlReader(path, type, skip_bad=skip_bad))


def _drop_torn_tail(path: Path) -> int:
    """Truncate a file to its last newline; return the number of bytes dropped."""
    size = path.stat().st_size
    if size == 0:
        return 0
    with path.open("rb+") as handle:
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return 0
        # Walk back in blocks until the last newline (or the start of the file).
        block = 1 << 16
        end = size
        while end > 0:
            begin = max(0, end - block)
            handle.seek(begin)
            found = handle.read(end - begin).rfind(b"\n")
            if found >= 0:
                keep = begin + found + 1
                break
            end = begin
        else:
            keep = 0
        handle.truncate(keep)
        return size - keep


class JsonlWriter:
    """Append Structs to a JSONL file, one line each, flushed (and optionally fsynced) per record.

    Use as a context manager. ``dropped_bytes`` tells whether a torn tail was removed on open.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.dropped_bytes = _drop_torn_tail(self.path) if self.path.exists() else 0
        self.fsync = fsync
        self._encoder = msgspec.json.Encoder()
        self._handle: IO[bytes] | None = self.path.open("ab")
        self.written = 0

    def write(self, record: object) -> None:
        """Append one record and flush it to the OS."""
        if self._handle is None:
            raise ValueError(f"{self.path}: writer is closed")
        self._handle.write(self._encoder.encode(record) + b"\n")
        self._handle.flush()
        if self.fsync:
            os.fsync(self._handle.fileno())
        self.written += 1

    def write_all(self, records: Iterable[object]) -> None:
        for record in records:
            self.write(record)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_jsonl(path: str | os.PathLike[str], records: Iterable[object]) -> int:
    """Write records to a fresh file (truncating it); return how many were written."""
    Path(path).unlink(missing_ok=True)
    with JsonlWriter(path) as writer:
        writer.write_all(records)
        return writer.written
