"""The tool set of a dataset: the calculator always, a search tool when any question is QA."""

from __future__ import annotations

from collections.abc import Sequence

from swirl.schema import Example
from swirl.settings import ToolSettings
from swirl.tools.base import Tool


def tools_for_examples(
    examples: Sequence[Example],
    data: str,
    *,
    split: str = "train",
    data_format: str | None = None,
    settings: ToolSettings | None = None,
) -> list[Tool]:
    """Tools for rolling out (or judging sampled actions on) ``examples`` of dataset ``data``.

    Search runs over a remote Search-R1 ``/retrieve`` server when ``settings.retriever_url`` is
    given, else over a local index of the dataset's corpus (built once and cached). None: the
    default :class:`~swirl.settings.ToolSettings`.
    """
    settings = settings or ToolSettings()
    from swirl.tools.calculator import Calculator

    tools: list[Tool] = [Calculator()]
    if any(example.task == "qa" for example in examples):
        if settings.retriever_url:
            from swirl.tools.remote_search import RemoteSearch

            tools.append(RemoteSearch(settings.retriever_url, top_k=settings.top_k))
        else:
            from swirl.data import load_corpus
            from swirl.tools.search import search_tool

            corpus = load_corpus(data, split=split, format=data_format)
            tools.append(search_tool(corpus, backend=settings.search, top_k=settings.top_k))
    return tools
