"""Where rollouts are sampled: in this process, or on a vLLM server kept in sync with the policy.

``ServingSettings.engine`` (``--rollout``):

- ``local``: the in-process engine (:class:`~swirl.backends.hf.HFBackend`) on the live model;
- ``vllm``: a vLLM server swirl starts on this machine for the run (:mod:`.vllm_server`), fed
  the policy's weights after every optimizer update (:mod:`.weight_sync`);
- ``vllm:URL``: a vLLM server you run (e.g. on other GPUs), started as :func:`vllm_command` would
  (``VLLM_SERVER_DEV_MODE=1``, ``--logprobs-mode processed_logprobs``, ``--generation-config
  vllm``); for the checkpoint sync it must read the trainer's ``out`` folder.

Either way the sampler is an :class:`~swirl.backends.openai.OpenAIBackend` sending token ids and
reading back the sampled ids and their log-probs, and :class:`ServerRollout` pairs it with the
weight sync of the chosen tier.
"""

from __future__ import annotations

import atexit
import contextlib
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import msgspec
import torch

from swirl.backends.openai import OpenAIBackend
from swirl.backends.server_process import free_port, serve
from swirl.backends.vllm_server import (
    SERVED_NAME,
    untied_copy,
    vllm_command,
    vllm_environment,
)
from swirl.backends.weight_sync import (
    CheckpointSync,
    LoraSync,
    NcclSync,
    ServerControl,
    WeightSync,
)

SyncTier = Literal["auto", "lora", "checkpoint", "nccl"]


def _doc(description: str) -> msgspec.Meta:
    return msgspec.Meta(description=description)


class ServingSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Where the policy's actions are sampled during training (flag ``--rollout``)."""

    engine: Annotated[
        str,
        _doc(
            "where rollouts are sampled: local (this process) | vllm (a vLLM server swirl "
            "starts) | vllm:URL (a vLLM server you run)"
        ),
    ] = "local"
    vllm_sync: Annotated[
        SyncTier,
        _doc(
            "how the server gets each update: lora (adapter swap, with --lora), checkpoint "
            "(full weights through the filesystem), nccl (GPU broadcast); auto: lora when "
            "training LoRA, else checkpoint"
        ),
    ] = "auto"
    vllm_port: Annotated[int | None, _doc("port of the server swirl starts (default: free)")] = None
    vllm_args: Annotated[str, _doc("more `vllm serve` arguments for the server swirl starts")] = ""
    vllm_kv_cache_gib: Annotated[float, _doc("CPU KV cache of the server swirl starts, GiB")] = 2.0
    vllm_eager: Annotated[
        bool, _doc("--enforce-eager: start in about 1 minute on 2 CPU cores instead of 3")
    ] = True
    vllm_startup_timeout: Annotated[float, _doc("seconds to wait for the server to answer")] = 900.0

    def __post_init__(self) -> None:
        if self.engine not in ("local", "vllm") and not self.engine.startswith("vllm:"):
            raise ValueError(f"rollout engine must be local, vllm or vllm:URL, got {self.engine!r}")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"rollout engine vllm:URL needs an http(s) URL, got {self.url!r}")

    @property
    def remote(self) -> bool:
        """Whether rollouts go to a vLLM server."""
        return self.engine != "local"

    @property
    def url(self) -> str | None:
        """The URL of a server the user runs (``vllm:URL``), else None."""
        return self.engine.removeprefix("vllm:") if self.engine.startswith("vllm:") else None

    def tier(self, *, lora: bool) -> SyncTier:
        """The sync tier in force (``auto`` resolved)."""
        if self.vllm_sync == "auto":
            return "lora" if lora else "checkpoint"
        if (self.vllm_sync == "lora") != lora:
            raise ValueError(
                f"vllm_sync {self.vllm_sync} "
                + ("needs LoRA training (--lora)" if not lora else "cannot sync LoRA training")
            )
        return self.vllm_sync


@dataclass
class ServerRollout:
    """A vLLM server's sampler and the weight sync that keeps it on the current policy."""

    backend: OpenAIBackend
    weights: WeightSync
    control: ServerControl
    tier: SyncTier


@contextmanager
def vllm_rollout(
    settings: ServingSettings,
    *,
    model_dir: str,
    tokenizer: object,
    work_dir: Path,
    dtype: torch.dtype = torch.float32,
    lora_rank: int | None = None,
    policy: torch.nn.Module | None = None,
    context_length: int = 4096,
    max_concurrency: int = 64,
) -> Iterator[ServerRollout]:
    """A vLLM sampler for the HF model at ``model_dir`` (the initial policy): the server swirl
    starts (stopped when the context exits) or the user's (``vllm:URL``).

    ``work_dir`` holds the served untied copy, the synced weights or adapter, and the server's
    log; ``lora_rank`` serves the base model with a runtime adapter; ``policy`` is the model the
    NCCL tier sends from (the sync tier is resolved from ``settings`` and ``lora_rank``).
    """
    tier = settings.tier(lora=lora_rank is not None)
    work_dir.mkdir(parents=True, exist_ok=True)
    name = "float32" if dtype == torch.float32 else str(dtype).removeprefix("torch.")
    with vllm_server(
        settings,
        model_dir=model_dir,
        work_dir=work_dir,
        dtype=name,
        lora_rank=lora_rank,
        tier=tier,
        context_length=context_length,
    ) as root:
        control = ServerControl(root)
        backend = OpenAIBackend(
            f"{root}/v1",
            tokenizer,  # type: ignore[arg-type]
            model=SERVED_NAME,
            context_length=context_length,
            max_concurrency=max_concurrency,
            prompt_format="ids",
        )
        weights: WeightSync
        if tier == "lora":
            weights = LoraSync(control, work_dir / "adapter")
        elif tier == "checkpoint":
            weights = CheckpointSync(control, work_dir / "weights", Path(model_dir))
        else:
            if policy is None:
                raise ValueError("the nccl weight sync needs the policy module")
            weights = NcclSync(
                control,
                policy,
                master_address="127.0.0.1",
                master_port=free_port(),
                server_world_size=1,
            )
        yield ServerRollout(backend, weights, control, tier)


@contextmanager
def vllm_server(
    settings: ServingSettings,
    *,
    model_dir: str,
    work_dir: Path,
    dtype: str = "float32",
    lora_rank: int | None = None,
    tier: SyncTier | None = "checkpoint",
    context_length: int = 4096,
) -> Iterator[str]:
    """The root URL (``http://host:port``) of the server to use: the user's (``vllm:URL``), or
    one started here on ``model_dir`` (an untied copy of it for the checkpoint tier; ``tier``
    None: a server whose weights never change) for the context's lifetime, its log in
    ``work_dir/vllm.log``."""
    if settings.url is not None:
        yield settings.url.rstrip("/").removesuffix("/v1")
        return
    served = model_dir if tier != "checkpoint" else untied_copy(model_dir, work_dir / "served")
    port = settings.vllm_port or free_port()
    extra = settings.vllm_args
    if tier == "nccl":
        extra += ' --weight-transfer-config \'{"backend": "nccl"}\''
    command = vllm_command(
        sys.executable,
        served,
        port=port,
        dtype=dtype,
        max_model_len=context_length,
        lora_rank=lora_rank,
        eager=settings.vllm_eager,
        # the CPU build's workaround (see vllm_command); a GPU server keeps chunked prefill
        whole_prefills=not torch.cuda.is_available(),
        extra_args=extra,
    )
    root = f"http://127.0.0.1:{port}"
    environment = vllm_environment(
        kv_cache_gib=settings.vllm_kv_cache_gib, lora=lora_rank is not None
    )
    with serve(
        command,
        f"{root}/v1",
        work_dir / "vllm.log",
        env=environment,
        startup_timeout=settings.vllm_startup_timeout,
    ):
        yield root


def served_backend(
    root: str, model_dir: str, work_dir: Path, *, max_concurrency: int = 64
) -> OpenAIBackend:
    """A sampler on the vLLM server at ``root`` after pointing it at the HF model in
    ``model_dir`` (reloaded in place from an untied copy): Stage 1 of a round on the server
    that the round's training will then keep in sync."""
    from swirl.model import load_tokenizer

    control = ServerControl(root)
    control.reload(untied_copy(model_dir, work_dir / "served-model"), model_dir)
    return OpenAIBackend(
        f"{root}/v1",
        load_tokenizer(model_dir),
        model=SERVED_NAME,
        context_length=4096,
        max_concurrency=max_concurrency,
        prompt_format="ids",
    )


_STARTED = contextlib.ExitStack()  # servers started for this process's lifetime


def stop_started_servers() -> None:
    """Stop every server :func:`start_vllm_backend` started in this process (also run at exit):
    for a process that goes on after using one, e.g. a test session or a notebook."""
    _STARTED.close()


atexit.register(stop_started_servers)


def start_vllm_backend(
    model_dir: str, *, max_concurrency: int = 64, context_length: int = 4096
) -> OpenAIBackend:
    """A sampler on a vLLM server started here on ``model_dir`` for the rest of this process
    (``--backend vllm`` of ``swirl generate`` and ``swirl eval``: weights that never change).
    The server is stopped at exit or by :func:`stop_started_servers`, and by Linux when this
    process dies."""
    from swirl.model import load_tokenizer

    work_dir = Path(tempfile.mkdtemp(prefix="swirl-vllm-"))
    settings = ServingSettings(engine="vllm")
    root = _STARTED.enter_context(
        vllm_server(
            settings,
            model_dir=model_dir,
            work_dir=work_dir,
            tier=None,
            context_length=context_length,
        )
    )
    print(f"vLLM server on {root} (log: {work_dir / 'vllm.log'})", file=sys.stderr)
    return OpenAIBackend(
        f"{root}/v1",
        load_tokenizer(model_dir),
        model=SERVED_NAME,
        context_length=context_length,
        max_concurrency=max_concurrency,
        prompt_format="ids",
    )
