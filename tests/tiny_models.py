"""Tiny random causal LMs for engine tests: any config a family takes, a tokenizer stand-in."""

from __future__ import annotations

import torch

VOCAB = 97


class Ids:
    """Just enough of a tokenizer for token-id generation on a tiny random model."""

    eos_token_id = 0
    pad_token_id = 0

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return " ".join(map(str, ids))


def tiny(model_type: str, dtype: torch.dtype = torch.float32, **overrides):
    """A 2-layer ``model_type`` model (6 query heads, 2 KV heads, vocabulary 97, 128 positions
    unless ``overrides`` say otherwise), seeded, with every bias drawn non-zero."""
    from transformers import AutoConfig, AutoModelForCausalLM

    options = dict(
        vocab_size=VOCAB,
        hidden_size=48,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=6,
        num_key_value_heads=2,
        max_position_embeddings=128,
        eos_token_id=0,
    )
    options.update(overrides)
    config = AutoConfig.for_model(model_type, **options)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():  # biases are zero at init: make them count
        for name, parameter in model.named_parameters():
            if name.endswith(".bias"):
                parameter.normal_(0, 0.5)
    return model.to(dtype)
