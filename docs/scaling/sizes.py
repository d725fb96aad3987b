"""The per-step sizes behind docs/scaling.md, measured on the embedded model and real data.

- Weights: the bytes each weight-sync tier moves for the embedded SmolLM2-135M, as written by
  swirl's own writers (the untied safetensors of the checkpoint tier; a PEFT adapter of the LoRA
  tier at ranks 8 and 16 on q/k/v/o), and the NCCL tier's payload (every parameter once, in the
  training dtype; tied embeddings counted once).
- Rollout traffic: one online step of the main job (8 states x G = 4 samples, 96-token turns) as
  the JSON bodies swirl's OpenAI client sends and vLLM answers with, from the states of real
  Stage-1 trajectories on demo-qa.

    .venv/bin/python docs/scaling/sizes.py
"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

import torch

from swirl.backends.base import SamplingParams
from swirl.backends.hf import HFBackend
from swirl.backends.vllm_server import write_untied
from swirl.data import load_examples
from swirl.decompose import decompose
from swirl.env import run_episodes
from swirl.model import load_model, resolve_model
from swirl.tools.factory import tools_for_examples

STATES, G, TURN_TOKENS = 8, 4, 96
MB = 1e6


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def weight_sizes(work: Path) -> None:
    model, _ = load_model()
    unique = {p.data_ptr(): p for p in model.parameters()}.values()
    params = sum(p.numel() for p in unique)
    print(f"parameters (tied embedding once): {params / 1e6:.1f} M")
    print(f"  nccl tier payload: fp32 {params * 4 / MB:.0f} MB, bf16 {params * 2 / MB:.0f} MB")
    untied = work / "untied"
    write_untied(model.state_dict(), resolve_model(None), untied)
    weights = sum(f.stat().st_size for f in untied.glob("*.safetensors"))
    print(f"  checkpoint tier (untied fp32 safetensors written per sync): {weights / MB:.0f} MB")
    from peft import LoraConfig, get_peft_model

    for rank in (8, 16):
        base, _ = load_model()
        adapter = get_peft_model(
            base,
            LoraConfig(
                r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]
            ),
        )
        out = work / f"lora-{rank}"
        adapter.save_pretrained(out)
        print(f"  lora tier, rank {rank} on q/k/v/o: {directory_bytes(out) / MB:.2f} MB")


def rollout_sizes() -> None:
    model, tokenizer = load_model()
    backend = HFBackend(model.eval(), tokenizer)
    examples = load_examples("demo-qa", split="train", limit=16, seed=0)
    trajectories = list(
        run_episodes(
            examples,
            backend,
            tools=tools_for_examples(examples, "demo-qa", split="train"),
            params=SamplingParams(max_new_tokens=TURN_TOKENS, temperature=0.5, seed=0),
        )
    )
    states = [s for t in trajectories for s in decompose(t)]
    lengths = [len(s.state_token_ids) for s in states]
    print(
        f"states: {len(states)}, tokens per state mean {sum(lengths) / len(lengths):.0f}, max {max(lengths)}"
    )
    chosen = random.Random(0).sample(states, STATES)
    request = sum(
        len(json.dumps({"prompt": s.state_token_ids, "max_tokens": TURN_TOKENS, "seed": 0})) * G
        for s in chosen
    )
    # A full-length answer's ids and log-probs as vLLM's JSON (its text fields come on top).
    answer = len(
        json.dumps(
            {
                "tokens": [f"token_id:{49151}"] * TURN_TOKENS,
                "token_logprobs": [-1.2345678901234567] * TURN_TOKENS,
            }
        )
    )
    print(
        f"one online step ({STATES} states x G={G}): requests {request / 1e3:.0f} kB, "
        f"answers' ids and log-probs {answer * STATES * G / 1e3:.0f} kB"
    )


if __name__ == "__main__":
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as work:
        weight_sizes(Path(work))
    rollout_sizes()
