"""Config files: TOML tables turned into validated msgspec Structs, errors naming file and field."""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import msgspec

T = TypeVar("T")


def load_struct(
    path: str | Path | None,
    type: type[T],
    *,
    overrides: Mapping[str, Any],
    select: Callable[[dict[str, Any]], dict[str, Any]] = dict,
    what: str = "config",
) -> T:
    """``type`` built from the TOML file at ``path`` (optional; ``select`` picks its table, and
    is given ``{}`` without a file) with ``overrides`` on top (None values ignored). Bad TOML or
    a bad field raises ValueError naming the file and the field."""
    toml: dict[str, Any] = {}
    if path is not None:
        try:
            toml = tomllib.loads(Path(path).read_text())
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"{path}: {error}") from None
    values = select(toml)
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return msgspec.convert(values, type)
    except msgspec.ValidationError as error:
        where = f"{path}: " if path is not None else ""
        raise ValueError(f"{where}invalid {what}: {error}") from None


def pin_config(path: Path, config: msgspec.Struct, what: str) -> None:
    """Record ``config`` at ``path`` (JSON), the identity of a resumable output directory: a
    directory started with another configuration is refused, so two runs never mix."""
    encoded = msgspec.json.format(msgspec.json.encode(config))
    if path.exists() and path.read_bytes() != encoded:
        raise ValueError(
            f"{path}: this {what} directory was started with another configuration; use a new "
            "output directory, or delete it to start over"
        )
    path.write_bytes(encoded)
