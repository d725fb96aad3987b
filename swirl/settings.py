"""The settings every stage must agree on, declared once, recorded with the data they made.

- :class:`RolloutSettings`: how the multi-step loop runs (step cap, few-shot, turn budget).
- :class:`ToolSettings`: which tools answer the actions (search kind, top-k, remote retriever,
  observation cap).
- :class:`JudgeSettings`: which judge labels steps and answers, and how it is asked.

Command-line flags are generated from these Structs (:mod:`swirl.flags`). ``swirl generate``
writes a :class:`RecordedSettings` beside its output (``runs/qa.jsonl`` ->
``runs/qa.settings.json``); ``swirl judge`` and ``swirl filter`` carry it to their outputs (the
judge adding its own settings), and ``swirl judge``, ``swirl train`` and ``swirl eval`` reuse it
unless the user gives a setting explicitly, which is then warned about by field name. So online
training rewards sampled actions with the tools and observation cap the policy saw in Stage 1.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import msgspec

S = TypeVar("S", bound=msgspec.Struct)
JUDGE_ENV = "SWIRL_JUDGE"  # the judge spec used when none is given


def _doc(description: str, **constraints: Any) -> msgspec.Meta:
    return msgspec.Meta(description=description, **constraints)


class RolloutSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """How one trajectory is rolled out."""

    max_steps: Annotated[
        Annotated[int, msgspec.Meta(ge=1)] | None,
        _doc("actions per trajectory (default: 5 for QA, 10 for math)"),
    ] = None
    few_shot: Annotated[int, _doc("worked examples in the prompt", ge=0)] = 2
    max_new_tokens: Annotated[int, _doc("tokens per model turn", ge=1)] = 256


class ToolSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """The tools that execute actions, and how their results reach the model."""

    search: Annotated[
        Literal["bm25", "dense"], _doc("local search index over the dataset's corpus")
    ] = "bm25"
    top_k: Annotated[int, _doc("documents per search (1, as in the paper)", ge=1)] = 1
    retriever_url: Annotated[
        str | None, _doc("a Search-R1 /retrieve server to search instead of a local index")
    ] = None
    observation_tokens: Annotated[int, _doc("a tool result is cut to this many tokens", ge=1)] = 256


class JudgeSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """The judge of steps (GOOD/BAD) and answers (YES/NO)."""

    judge: Annotated[
        str | None,
        _doc(
            "reference (gold annotations, no model) | grounded (the paper's process judge "
            "without a model: an answer is GOOD only when correct and every supporting document "
            "was retrieved) | hf:PATH (hf: = the embedded model) | openai:URL[#model]; default "
            f"${JUDGE_ENV}, else reference"
        ),
    ] = None
    judge_cache: Annotated[
        str | None, _doc("SQLite cache of LLM judge replies (default: <swirl cache>/judge.sqlite)")
    ] = None
    no_judge_cache: Annotated[bool, _doc("do not read or write the judge cache")] = False
    judge_retries: Annotated[int, _doc("re-asks of an unparseable reply", ge=0)] = 2
    judge_samples: Annotated[int, _doc("majority vote over this many replies", ge=1)] = 1
    judge_temperature: Annotated[
        Annotated[float, msgspec.Meta(ge=0)] | None,
        _doc("0 = greedy (default; 0.7 when judge_samples > 1)"),
    ] = None
    judge_max_tokens: Annotated[int, _doc("reply length cap, tokens", ge=1)] = 512

    @property
    def spec(self) -> str:
        """The judge spec in force: the setting, else ``$SWIRL_JUDGE``, else ``reference``."""
        return self.judge or os.environ.get(JUDGE_ENV) or "reference"


class RecordedSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What made a trajectory file: its data, model, sampling and settings (the sidecar)."""

    data: str
    data_format: str | None = None
    split: str = "train"
    data_seed: int = 0  # the seed the questions were drawn with (built-in demo data)
    model: str | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    samples_per_question: int = 1
    rollout: RolloutSettings = RolloutSettings()
    tools: ToolSettings = ToolSettings()
    judge: JudgeSettings | None = None  # added by `swirl judge`


def settings_path(data_file: str | os.PathLike[str]) -> Path:
    """The sidecar of a trajectory file: ``runs/qa.jsonl`` -> ``runs/qa.settings.json``."""
    return Path(data_file).with_suffix(".settings.json")


def read_settings(data_file: str | os.PathLike[str]) -> RecordedSettings | None:
    """The settings recorded with ``data_file``, or None when it has none (an older file or one
    written by other tools). A corrupt sidecar raises ValueError naming it."""
    path = settings_path(data_file)
    if not path.exists():
        return None
    try:
        return msgspec.json.decode(path.read_bytes(), type=RecordedSettings)
    except msgspec.DecodeError as error:
        raise ValueError(f"{path}: invalid settings: {error}") from None


def write_settings(data_file: str | os.PathLike[str], settings: RecordedSettings) -> None:
    """Record ``settings`` beside ``data_file``. Appending to a file made with other settings
    would mix two experiments in one file: that raises ValueError naming the differing fields."""
    path = settings_path(data_file)
    existing = read_settings(data_file)
    if existing is not None and Path(data_file).exists():
        changed = differing_fields(existing, settings)
        if changed:
            raise ValueError(
                f"{data_file} was started with other settings ({', '.join(changed)} differ, see "
                f"{path}); write to a new file or delete both to start over"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgspec.json.format(msgspec.json.encode(settings)))


def differing_fields(old: msgspec.Struct, new: msgspec.Struct, prefix: str = "") -> list[str]:
    """Dotted names of the fields whose values differ between two Structs of one type."""
    out = []
    for name in old.__struct_fields__:
        a, b = getattr(old, name), getattr(new, name)
        if isinstance(a, msgspec.Struct) and type(a) is type(b):
            out += differing_fields(a, b, f"{prefix}{name}.")
        elif a != b:
            out.append(f"{prefix}{name}")
    return out


def with_overrides(
    recorded: S | None, cls: type[S], given: dict[str, Any], *, source: str | None = None
) -> S:
    """``recorded`` (else ``cls``'s defaults) with the explicitly ``given`` fields replaced; each
    given field that differs from what ``source`` recorded is warned about by name."""
    base = recorded if recorded is not None else cls()
    if recorded is not None and source is not None:
        for name, value in given.items():
            if getattr(recorded, name) != value:
                warnings.warn(
                    f"{name} = {value!r} overrides {getattr(recorded, name)!r}, recorded with "
                    f"{source}",
                    stacklevel=2,
                )
    try:
        return msgspec.convert({**msgspec.to_builtins(base), **given}, cls)
    except msgspec.ValidationError as error:
        raise ValueError(f"invalid {cls.__name__}: {error}") from None
