"""Shared fixtures. The real embedded model is loaded once per test session."""

from __future__ import annotations

import os

import pytest
import torch

# Without a GPU, Triton kernels run in Triton's interpreter on CPU tensors. Triton reads this when
# its modules are imported, so it is set here, before any test module can import triton.
if "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

# Model hubs are unreachable here and in CI: fail at once instead of retrying with backoff.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def embedded_model():
    """(model, tokenizer) of the embedded SmolLM2-135M-Instruct, float32, eval mode, on CPU."""
    from swirl.model import load_model

    model, tokenizer = load_model()
    model.eval()
    return model, tokenizer
