"""Weight sync: after every optimizer update, the rollout server samples from the new policy.

Three tiers, all through vLLM's own mechanisms (see :mod:`swirl.backends.vllm_server` for the
server's flags):

- :class:`LoraSync` (training with ``--lora``): the trainer writes its adapter (a few MB) and the
  server swaps it in place (``POST /v1/load_lora_adapter`` with ``load_inplace``);
- :class:`CheckpointSync` (full fine-tuning, a server that shares the trainer's filesystem): the
  trainer writes its full weights (untied, safetensors) and the server reloads them in place
  (``POST /collective_rpc`` ``reload_weights``);
- :class:`NcclSync` (GPUs): vLLM's weight-transfer engine broadcasts the parameters over NCCL
  from the trainer to the server's workers (``/init_weight_transfer_engine``,
  ``/update_weights``). It needs CUDA on both sides and is untested here (no GPU).

After a sync the server's prefix cache is reset (cached KV of the old weights would be reused
otherwise) and its weight version is set, so ``/weight_info`` tells which policy it serves.
Every ``sync`` returns its wall time in seconds.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol

import httpx
import torch

from swirl.backends.vllm_server import SERVED_NAME, write_untied


class WeightSync(Protocol):
    def sync(self, model: torch.nn.Module, version: int) -> float:
        """Make the server sample from ``model`` (the trainer's policy after ``version``
        optimizer updates); returns the seconds it took."""
        ...


class ServerControl:
    """The HTTP control routes of a vLLM server at ``root`` (``http://host:port``)."""

    def __init__(self, root: str, *, timeout: float = 600.0) -> None:
        self.root = root.rstrip("/").removesuffix("/v1")
        self.timeout = timeout

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        response = httpx.post(f"{self.root}{path}", json=body, timeout=self.timeout)
        if response.status_code >= 400:
            raise RuntimeError(
                f"{self.root}{path}: HTTP {response.status_code}: {response.text[:500]} (the "
                "server must run with VLLM_SERVER_DEV_MODE=1; LoRA updates also need "
                "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True)"
            )
        try:
            return response.json() if response.content else None
        except ValueError:  # e.g. load_lora_adapter answers in plain text
            return response.text

    def finish(self, version: int | str) -> None:
        """Drop the prefix cache of the old weights and record the new weight version."""
        self.post("/reset_prefix_cache")
        self.post("/update_weight_version", {"new_version": str(version)})

    def reload(self, weights_dir: Path, version: int | str) -> None:
        """Reload the server's weights in place from the (untied) HF folder ``weights_dir``."""
        self.post(
            "/collective_rpc",
            {"method": "reload_weights", "kwargs": {"weights_path": str(weights_dir)}},
        )
        self.finish(version)

    def weight_version(self) -> str | None:
        response = httpx.get(f"{self.root}/weight_info", timeout=self.timeout)
        response.raise_for_status()
        return response.json().get("weight_version")


class CheckpointSync:
    """Full weights through the filesystem: ``directory`` must be readable by the server."""

    def __init__(self, control: ServerControl, directory: Path, config_dir: Path) -> None:
        self.control = control
        self.directory = directory
        self.config_dir = config_dir

    def sync(self, model: torch.nn.Module, version: int) -> float:
        started = time.perf_counter()
        write_untied(model.state_dict(), self.config_dir, self.directory)
        self.control.reload(self.directory, version)
        return time.perf_counter() - started


class LoraSync:
    """A LoRA adapter (the trainer's PEFT model) swapped in place as :data:`SERVED_NAME`."""

    def __init__(self, control: ServerControl, directory: Path) -> None:
        self.control = control
        self.directory = directory

    def sync(self, model: torch.nn.Module, version: int) -> float:
        started = time.perf_counter()
        model.save_pretrained(self.directory)  # a PeftModel writes only its adapter
        self.control.post(
            "/v1/load_lora_adapter",
            {"lora_name": SERVED_NAME, "lora_path": str(self.directory), "load_inplace": True},
        )
        self.control.finish(version)
        return time.perf_counter() - started


class NcclSync:
    """vLLM's NCCL weight transfer (GPU trainer and GPU server; the server started with
    ``--weight-transfer-config '{"backend": "nccl"}'``). Untested here: no GPU."""

    def __init__(
        self,
        control: ServerControl,
        model: torch.nn.Module,
        *,
        master_address: str,
        master_port: int,
        server_world_size: int,
    ) -> None:
        from vllm.distributed.weight_transfer.base import ModuleSource
        from vllm.distributed.weight_transfer.clients import HTTPVLLMWeightSyncClient
        from vllm.distributed.weight_transfer.factory import WeightTransferTrainerFactory
        from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerInitInfo

        if not torch.cuda.is_available():
            raise ValueError("the nccl weight sync needs CUDA; use checkpoint or lora")
        self.control = control
        self.engine = WeightTransferTrainerFactory.trainer_init(
            NCCLTrainerInitInfo(
                master_address=master_address,
                master_port=master_port,
                world_size=1 + server_world_size,
                rank=0,
            ),
            client=HTTPVLLMWeightSyncClient(control.root),
            source=ModuleSource(model),
        )

    def sync(self, model: torch.nn.Module, version: int) -> float:
        started = time.perf_counter()
        self.engine.send_weights()
        self.control.finish(version)
        return time.perf_counter() - started
