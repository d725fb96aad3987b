"""Command-line flags generated from msgspec Structs: one flag per field, its help the field's
description, so a setting is declared (type, default, meaning) in exactly one place.

A field ``top_k: Annotated[int, msgspec.Meta(description="documents per search")] = 1`` becomes
``--top-k`` with help ``documents per search (default: 1)``. Every flag defaults to None, so a
command can tell the values a user gave (:func:`given_values`) from the ones it should take from
elsewhere (a recorded settings file, a TOML config, the Struct's defaults). Nested Struct fields
are flattened: their own fields become flags (their names must not collide).
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Collection, Mapping
from typing import Any

import msgspec


def field_descriptions(cls: type[msgspec.Struct]) -> dict[str, str]:
    """The ``msgspec.Meta(description=...)`` of each field of ``cls`` that has one."""
    out = {}
    for name, hint in typing.get_type_hints(cls, include_extras=True).items():
        for meta in getattr(hint, "__metadata__", ()):
            if isinstance(meta, msgspec.Meta) and meta.description:
                out[name] = meta.description
    return out


def _scalar(annotation: object) -> tuple[object, list[str] | None]:
    """(scalar type, choices) of a field's annotation: Annotated and Optional are unwrapped."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _scalar(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _scalar(inner[0]) if len(inner) == 1 else (None, None)
    if typing.get_origin(annotation) is typing.Literal:
        return str, [str(a) for a in typing.get_args(annotation)]
    return annotation, None


def nested_structs(cls: type[msgspec.Struct]) -> dict[str, type[msgspec.Struct]]:
    """The fields of ``cls`` that hold a Struct (optionally None), by name."""
    hints = typing.get_type_hints(cls)
    out = {}
    for field in msgspec.structs.fields(cls):
        kind, _ = _scalar(hints[field.name])
        if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
            out[field.name] = kind
    return out


def add_struct_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type[msgspec.Struct],
    *,
    skip: Collection[str] = (),
    flag_names: Mapping[str, str] | None = None,
) -> None:
    """One flag per field of ``cls`` (nested Structs flattened), each defaulting to None.

    Fields named ``no_*`` with a False default become plain switches (``--no-judge-cache``),
    other booleans ``--x / --no-x``; a field whose type has no flag form (a list) is skipped.
    ``flag_names`` renames the flag of a field (``{"engine": "--rollout"}``); its dest stays
    the field name.
    """
    hints = typing.get_type_hints(cls, include_extras=True)
    descriptions = field_descriptions(cls)
    nested = nested_structs(cls)
    for field in msgspec.structs.fields(cls):
        if field.name in skip:
            continue
        if field.name in nested:
            add_struct_flags(parser, nested[field.name], skip=skip, flag_names=flag_names)
            continue
        kind, choices = _scalar(hints[field.name])
        if kind not in (str, int, float, bool):
            continue
        flag = (flag_names or {}).get(field.name, "--" + field.name.replace("_", "-"))
        default = None if field.default is msgspec.NODEFAULT else field.default
        help_text = descriptions.get(field.name, "")
        if default not in (None, ""):
            help_text = f"{help_text} (default: {default})".strip()
        if kind is bool and field.name.startswith("no_") and default is False:
            parser.add_argument(
                flag, dest=field.name, action="store_const", const=True, help=help_text
            )
        elif kind is bool:
            parser.add_argument(
                flag, dest=field.name, action=argparse.BooleanOptionalAction, help=help_text
            )
        else:
            parser.add_argument(
                flag, dest=field.name, type=kind, choices=choices, default=None, help=help_text
            )


def given_values(args: argparse.Namespace, cls: type[msgspec.Struct]) -> dict[str, Any]:
    """The flags of ``cls``'s own (not nested) fields that were given on the command line."""
    nested = nested_structs(cls)
    return {
        f.name: getattr(args, f.name)
        for f in msgspec.structs.fields(cls)
        if f.name not in nested and getattr(args, f.name, None) is not None
    }
