"""swirl: step-wise reinforcement learning (SWiRL) for multi-step reasoning and tool use.

The top-level names are loaded on first use, so ``import swirl`` (and the CLI's ``--help``)
stays fast and does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "Action": "swirl.schema",
    "Example": "swirl.schema",
    "Judgment": "swirl.schema",
    "Step": "swirl.schema",
    "SubTrajectory": "swirl.schema",
    "SupportingFact": "swirl.schema",
    "Trajectory": "swirl.schema",
    "decompose": "swirl.decompose",
    "parse_action": "swirl.tags",
    "parse_actions": "swirl.tags",
    "find_action_stop": "swirl.tags",
    "JsonlReader": "swirl.jsonl",
    "JsonlWriter": "swirl.jsonl",
    "JsonlError": "swirl.jsonl",
    "read_jsonl": "swirl.jsonl",
    "write_jsonl": "swirl.jsonl",
    "Document": "swirl.corpus",
    "load_examples": "swirl.data",
    "load_corpus": "swirl.data",
    "Calculator": "swirl.tools.calculator",
    "Search": "swirl.tools.search",
    "search_tool": "swirl.tools.search",
    "RemoteSearch": "swirl.tools.remote_search",
    "SamplingParams": "swirl.backends.base",
    "Completion": "swirl.backends.base",
    "GenerationBackend": "swirl.backends.base",
    "HFBackend": "swirl.backends.hf",
    "OpenAIBackend": "swirl.backends.openai",
    "EnvConfig": "swirl.env",
    "run_episodes": "swirl.env",
    "parse_verdict": "swirl.judge.verdict",
    "ReferenceJudge": "swirl.judge.reference",
    "LLMJudge": "swirl.judge.llm",
    "exact_match": "swirl.metrics",
    "f1": "swirl.metrics",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'swirl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
