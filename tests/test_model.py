"""The embedded model: found in the PyPI wheel, converted once, loaded from the cache."""

from __future__ import annotations

import pytest

from swirl.model import embedded_gguf_path, resolve_model


def test_gguf_is_installed() -> None:
    path = embedded_gguf_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000


def test_other_names_pass_through() -> None:
    assert resolve_model("some-org/some-model") == "some-org/some-model"


@pytest.mark.slow
def test_embedded_model_loads_and_predicts(embedded_model) -> None:
    import torch

    model, tokenizer = embedded_model
    assert model.config.vocab_size == 49152
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        next_token = model(ids).logits[0, -1].argmax().item()
    assert tokenizer.decode([next_token]).strip() == "Paris"
