"""Resolving ``--data NAME_OR_PATH``: built-in datasets, Hugging Face hub names, and local files
whose format is detected from their fields or given explicitly.

Names:

- ``demo-math``, ``demo-qa`` and ``demo-qa:N`` (a world of N people): generated, offline;
- ``demo-hops``: generated, offline, with fixed train/validation/test splits over disjoint
  entities (:mod:`swirl.data.demo_hops`; ``seed`` does not apply);
- ``gsm8k``, ``hotpotqa``: the Hugging Face hub copies (needs the optional ``datasets`` package
  and a reachable hub); ``hf:REPO[:CONFIG]`` any hub dataset, with ``format=``;
- a file path: ``.json`` or ``.jsonl`` in one of :data:`FORMATS` (detected, or ``format=``).

For files, ``split`` and ``seed`` do not apply (a file is one split, read in order); ``limit``
keeps the first records. For ``demo-math`` and ``demo-qa`` ``seed`` chooses the questions and
``split`` the part of the question space they come from (train or test; their validation
questions are carved from the train split, see ``RunConfig.validation_limit``).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from swirl.corpus import Document, is_corpus_file, read_corpus
from swirl.data import beerqa, cofca, demo_hops, demo_math, demo_qa, gsm8k, hotpotqa, musique
from swirl.data.records import DataFormatError, Record, read_records
from swirl.data.synthetic import SPLITS
from swirl.jsonl import read_jsonl
from swirl.schema import Example

log = logging.getLogger(__name__)

# format name -> module with load(records, dataset=...) and, for QA formats, corpus(records)
FORMATS: dict[str, ModuleType] = {
    "hotpotqa": hotpotqa,
    "musique": musique,
    "beerqa": beerqa,
    "cofca": cofca,
    "gsm8k": gsm8k,
}
# extra file kinds: swirl's own Example JSONL and a bare corpus JSONL
FILE_KINDS = (*FORMATS, "examples", "corpus")

# hub name -> (repository, config, format, {our split: hub split})
HUB: dict[str, tuple[str, str | None, str, dict[str, str]]] = {
    "gsm8k": ("openai/gsm8k", "main", "gsm8k", {"train": "train", "test": "test"}),
    "hotpotqa": (
        "hotpotqa/hotpot_qa",
        "distractor",
        "hotpotqa",
        {"train": "train", "test": "validation"},
    ),
}
DATASETS = ("demo-math", "demo-qa", "demo-qa:N", "demo-hops", *HUB, "hf:REPO[:CONFIG]", "PATH")
ALL_SPLITS = ("train", "validation", "test")

_DEMO_QA = re.compile(r"^demo-qa(?::(\d+))?$")
_HEAD_BYTES = 1 << 16
_KEY = re.compile(rb'"([A-Za-z_]+)"\s*:')
# BeerQA's wrapper object: its test split's records have only id and question, so the wrapper is
# what tells them apart (train/dev records also carry src, answers and context).
_BEERQA_WRAPPER = frozenset({"version", "split", "data"})


def _keys_of(path: Path) -> set[str]:
    """Field names near the start of a file: the first JSONL record's keys, or for ``.json`` the
    keys seen in its first 64 KiB (enough for one record of every supported format)."""
    if path.suffix == ".jsonl":
        first = next(iter(read_records(path)), None)
        return set(first.data) if first is not None and isinstance(first.data, dict) else set()
    with path.open("rb") as handle:
        head = handle.read(_HEAD_BYTES)
    return {match.decode() for match in _KEY.findall(head)}


def detect_format(path: str | Path) -> str:
    """The kind of a local dataset file (one of :data:`FILE_KINDS`), from its field names."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such dataset file")
    if path.suffix not in (".json", ".jsonl"):
        raise DataFormatError(f"{path}: expected a .json or .jsonl file")
    if is_corpus_file(path):
        return "corpus"
    keys = _keys_of(path)
    if {"id", "question", "answers", "dataset"} <= keys:
        return "examples"
    if "question_decomposition" in keys or "paragraph_text" in keys:
        return "musique"
    if "supporting_facts" in keys or "_id" in keys:
        return "hotpotqa"
    if {"src", "answers", "context"} <= keys or keys >= _BEERQA_WRAPPER:
        return "beerqa"
    if keys & {"passage", "sub_qa", "sub_questions"}:
        return "cofca"
    if {"question", "answer"} <= keys and "context" not in keys:
        return "gsm8k"
    shown = ", ".join(sorted(keys)[:12]) or "none"
    raise DataFormatError(
        f"{path}: cannot tell the dataset format (fields seen: {shown}); "
        f"give it explicitly, one of {', '.join(FILE_KINDS)}"
    )


def _file_records(path: Path, kind: str) -> Iterator[Record]:
    return read_records(path, list_key=getattr(FORMATS[kind], "LIST_KEY", None))


def _hub_records(name: str, split: str) -> tuple[Iterator[Record], str]:
    """Rows of a hub dataset as records, and their format."""
    if name.startswith("hf:"):
        repository, _, config = name[3:].partition(":")
        kind, hub_split = None, split
    else:
        repository, config, kind, splits = HUB[name]
        hub_split = splits[split]
    try:
        import datasets
    except ImportError:
        raise ValueError(
            f"{name}: loading from the Hugging Face hub needs the 'datasets' package "
            "(pip install datasets); or download the file and pass its path"
        ) from None
    try:
        rows = datasets.load_dataset(repository, config or None, split=hub_split)
    except Exception as error:
        raise ValueError(
            f"{name}: could not load {repository} ({hub_split}) from the hub: {error}; "
            "download the file and pass its path instead"
        ) from error
    records = (
        Record(dict(row), f"{repository} {hub_split} row {i}", i) for i, row in enumerate(rows)
    )
    return records, kind or ""


def _resolve(
    name_or_path: str | Path, split: str, format: str | None
) -> tuple[Iterator[Record] | None, str, str, Path | None]:
    """(records or None for files of our own kinds, kind, dataset label, file path or None)."""
    text = str(name_or_path)
    if text in HUB or text.startswith("hf:"):
        records, kind = _hub_records(text, split)
        kind = format or kind
        if kind not in FORMATS:
            raise ValueError(
                f"{text}: give the format of this hub dataset, one of {', '.join(FORMATS)}"
            )
        return records, kind, text.removeprefix("hf:"), None
    path = Path(text)
    if not path.exists():
        raise FileNotFoundError(
            f"{text}: not a dataset name ({', '.join(DATASETS)}) nor an existing file"
        )
    kind = format or detect_format(path)
    if kind not in FILE_KINDS:
        raise ValueError(
            f"unknown dataset format {kind!r}; expected one of {', '.join(FILE_KINDS)}"
        )
    if kind in FORMATS:
        return _file_records(path, kind), kind, kind, path
    return None, kind, kind, path


def splits_of(name_or_path: str | Path) -> tuple[str, ...] | None:
    """The splits a named dataset offers; None for a file (one split, whatever ``split`` says)."""
    text = str(name_or_path)
    if text == demo_hops.NAME:
        return demo_hops.SPLITS
    if text == demo_math.NAME or _DEMO_QA.match(text) or text in HUB or text.startswith("hf:"):
        return SPLITS
    return None


def is_generated(name_or_path: str | Path) -> bool:
    """Whether ``name_or_path`` names a built-in generated dataset (offline, every split cheap)."""
    text = str(name_or_path)
    return text in (demo_hops.NAME, demo_math.NAME) or _DEMO_QA.match(text) is not None


def check_split(name_or_path: str | Path, split: str) -> str:
    """``split`` if dataset ``name_or_path`` offers it, else a ValueError naming both."""
    offered = splits_of(name_or_path) or ALL_SPLITS
    if split not in offered:
        raise ValueError(
            f"{name_or_path}: no {split!r} split (it has {', '.join(offered)})"
            + (
                "; its validation questions are the train split's after the training ones "
                "(RunConfig.validation_limit)"
                if split == "validation"
                else ""
            )
        )
    return split


def load_examples(
    name_or_path: str | Path,
    *,
    split: str = "train",
    limit: int | None = None,
    seed: int = 0,
    format: str | None = None,
) -> list[Example]:
    """Examples of a built-in dataset, a hub dataset or a local file (see the module docstring)."""
    split = check_split(name_or_path, split)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    text = str(name_or_path)
    if text == demo_hops.NAME:
        return demo_hops.load(split, limit)
    if text == demo_math.NAME:
        return demo_math.load(split, limit, seed=seed)  # type: ignore[arg-type]
    if match := _DEMO_QA.match(text):
        people = int(match.group(1) or demo_qa.DEFAULT_PEOPLE)
        return demo_qa.load(split, limit, seed=seed, people=people)  # type: ignore[arg-type]
    records, kind, label, path = _resolve(name_or_path, split, format)
    if kind == "corpus":
        raise ValueError(f"{path}: this is a corpus (id/title/text), not a dataset of questions")
    if records is None:  # swirl Example JSONL
        examples = read_jsonl(path, Example)
        return examples if limit is None else examples[:limit]
    if limit is not None:
        records = itertools.islice(records, limit)
    return FORMATS[kind].load(records, dataset=label)


def load_corpus(
    name_or_path: str | Path,
    *,
    split: str = "train",
    format: str | None = None,
    allow_empty: bool = False,
) -> list[Document]:
    """The documents a search tool indexes for a dataset (or a corpus JSONL file).

    A dataset whose records carry no documents (an official test split without context
    paragraphs) is a :class:`DataFormatError` naming it: a search tool over it would find nothing.
    With ``allow_empty`` (exporting what a file holds) it is a logged warning and ``[]``.
    """
    text = str(name_or_path)
    if text == demo_hops.NAME:
        return demo_hops.corpus()
    if match := _DEMO_QA.match(text):
        return demo_qa.corpus(int(match.group(1) or demo_qa.DEFAULT_PEOPLE))
    if text == demo_math.NAME:
        raise ValueError(f"{text} is a math dataset: it has no documents to search")
    records, kind, _label, path = _resolve(name_or_path, check_split(text, split), format)
    if kind == "corpus":
        return read_corpus(path)
    module = FORMATS.get(kind)
    if module is None or not hasattr(module, "corpus") or records is None:
        raise ValueError(f"{text}: a {kind} dataset has no documents to search")
    documents = module.corpus(records)
    if not documents:
        problem = (
            f"{text}: no documents to search: its {kind} records have no context paragraphs "
            "(as in an official test split)"
        )
        if not allow_empty:
            raise DataFormatError(
                f"{problem}; search the corpus of a split that has them, or a retrieval server"
            )
        log.warning("%s; the corpus is empty", problem)
    return documents


# --- the shared command-line convention ------------------------------------------------------


def add_data_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """Add ``--data``, ``--data-format`` and ``--split`` to a command's parser."""
    parser.add_argument(
        "--data",
        required=required,
        metavar="NAME_OR_PATH",
        help="demo-math, demo-qa[:PEOPLE], demo-hops, gsm8k, hotpotqa, hf:REPO[:CONFIG], or a "
        ".json/.jsonl file (HotPotQA, MuSiQue, BeerQA, CofCA, GSM8K, swirl examples; format "
        "detected)",
    )
    parser.add_argument(
        "--data-format", choices=FILE_KINDS, default=None, help="format of --data when not detected"
    )
    parser.add_argument("--split", choices=ALL_SPLITS, default="train", help="default: train")


def examples_from_args(
    args: argparse.Namespace, *, limit: int | None = None, seed: int = 0
) -> list[Example]:
    return load_examples(
        args.data, split=args.split, limit=limit, seed=seed, format=args.data_format
    )


def corpus_from_args(args: argparse.Namespace, *, allow_empty: bool = False) -> list[Document]:
    return load_corpus(
        args.data, split=args.split, format=args.data_format, allow_empty=allow_empty
    )
