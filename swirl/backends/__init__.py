"""Generation backends: local Hugging Face transformers and any OpenAI-compatible server."""

from __future__ import annotations

from swirl.backends.base import (
    Completion,
    FinishReason,
    GenerationBackend,
    SamplingParams,
    derive_seed,
    params_per_prompt,
)

__all__ = [
    "Completion",
    "FinishReason",
    "GenerationBackend",
    "SamplingParams",
    "derive_seed",
    "params_per_prompt",
]
