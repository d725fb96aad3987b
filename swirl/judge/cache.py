"""On-disk cache of judge completions, so reruns and resumed runs cost no judge calls.

A SQLite file (WAL mode, safe for several processes sharing it). The key is a SHA-256 of (judge
name, i.e. its model: ``hf:PATH`` or ``openai:URL#model``; generation settings; the chat messages;
sample index; attempt); the value is the judge's raw reply, so a change of the verdict parser
needs no new calls. Failed requests are never cached: a rerun asks again.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import msgspec

from swirl.judge.prompts import Messages

_SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    sample INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    completion TEXT NOT NULL,
    created REAL NOT NULL
)
"""

_encoder = msgspec.json.Encoder(order="sorted")


def cache_key(model: str, settings: str, messages: Messages, sample: int, attempt: int) -> str:
    """Hex SHA-256 naming one judge request."""
    payload = _encoder.encode([model, settings, messages, sample, attempt])
    return hashlib.sha256(payload).hexdigest()


class JudgeCache:
    """Maps :func:`cache_key` keys to judge replies. ``hits``/``misses`` count lookups."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=60)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)
            self._db.commit()
        except sqlite3.DatabaseError as error:
            raise ValueError(f"{self.path}: not a usable judge cache ({error})") from None
        self.hits = 0
        self.misses = 0

    def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        """The cached replies of those ``keys`` that are present."""
        found: dict[str, str] = {}
        # SQLite limits the number of bound parameters; look up in chunks.
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, completion FROM completions WHERE key IN ({marks})", chunk
            )
            found.update(rows.fetchall())
        self.hits += len(found)
        self.misses += len(set(keys)) - len(found)
        return found

    def put_many(self, entries: Iterable[tuple[str, str, int, int, str]]) -> None:
        """Store ``(key, model, sample, attempt, completion)`` entries (first write wins)."""
        now = time.time()
        self._db.executemany(
            "INSERT OR IGNORE INTO completions VALUES (?, ?, ?, ?, ?, ?)",
            [(*entry, now) for entry in entries],
        )
        self._db.commit()

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM completions").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> JudgeCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
