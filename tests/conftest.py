"""Shared fixtures. The real embedded model is loaded once per test session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def embedded_model():
    """(model, tokenizer) of the embedded SmolLM2-135M-Instruct, float32, eval mode, on CPU."""
    from swirl.model import load_model

    model, tokenizer = load_model()
    model.eval()
    return model, tokenizer
