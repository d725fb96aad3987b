"""The tool set of a dataset: the calculator always, a search tool when any question is QA."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from swirl.schema import Example
from swirl.tools.base import Tool


def tools_for_examples(
    examples: Sequence[Example],
    data: str,
    *,
    split: str = "train",
    data_format: str | None = None,
    search: Literal["bm25", "dense"] = "bm25",
    top_k: int = 1,
    retriever_url: str | None = None,
) -> list[Tool]:
    """Tools for rolling out (or judging sampled actions on) ``examples`` of dataset ``data``.

    Search runs over a remote Search-R1 ``/retrieve`` server when ``retriever_url`` is given,
    else over a local index of the dataset's corpus (built once and cached).
    """
    from swirl.tools.calculator import Calculator

    tools: list[Tool] = [Calculator()]
    if any(example.task == "qa" for example in examples):
        if retriever_url:
            from swirl.tools.remote_search import RemoteSearch

            tools.append(RemoteSearch(retriever_url, top_k=top_k))
        else:
            from swirl.data import load_corpus
            from swirl.tools.search import search_tool

            corpus = load_corpus(data, split=split, format=data_format)
            tools.append(search_tool(corpus, backend=search, top_k=top_k))
    return tools
