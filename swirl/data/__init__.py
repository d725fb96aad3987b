"""Datasets: built-in generated ones (``demo-math``, ``demo-qa``) and loaders for the real formats
(HotPotQA, MuSiQue, BeerQA, CofCA, GSM8K), all turned into :class:`~swirl.schema.Example` lists
and, where the format carries documents, a search corpus.

``--data NAME_OR_PATH`` on the command line means the same as ``name_or_path`` here
(:func:`add_data_arguments`, :func:`examples_from_args`).
"""

from swirl.data.records import DataFormatError
from swirl.data.registry import (
    DATASETS,
    FORMATS,
    add_data_arguments,
    corpus_from_args,
    detect_format,
    examples_from_args,
    load_corpus,
    load_examples,
)

__all__ = [
    "DATASETS",
    "FORMATS",
    "DataFormatError",
    "add_data_arguments",
    "corpus_from_args",
    "detect_format",
    "examples_from_args",
    "load_corpus",
    "load_examples",
]
