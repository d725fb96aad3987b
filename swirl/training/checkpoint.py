"""Checkpoints that resume exactly: weights (safetensors), optimizer, scheduler, RNG, data position.

Layout under ``<out>/checkpoints/``::

    step-000004/model/        HF folder (safetensors): usable directly as ``--model``
    step-000004/trainer.pt    optimizer + scheduler + RNG states
    step-000004/state.json    {"step": 4, "data_position": ..., ...}
    latest                    name of the newest complete checkpoint (written last, atomically)
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

LATEST = "latest"


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    root: Path,
    *,
    step: int,
    model: torch.nn.Module,
    tokenizer: Any,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: dict[str, Any],
    keep_last: int = 2,
) -> Path:
    """Write checkpoint ``step`` and point ``latest`` at it; prune all but the newest ``keep_last``.

    ``model_state``/``optimizer_state`` are full (unsharded) state dicts; ``model`` only supplies
    ``save_pretrained`` (a PEFT model saves its adapter). Call on one process only.
    """
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:06d}"
    target = root / name
    staging = root / f".{name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    model.save_pretrained(staging / "model", state_dict=model_state, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(staging / "model")
    torch.save(
        {"optimizer": optimizer_state, "scheduler": scheduler.state_dict(), "rng": rng_state()},
        staging / "trainer.pt",
    )
    (staging / "state.json").write_text(json.dumps({"step": step, **state}, indent=2))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    pointer = root / f".{LATEST}.tmp"
    pointer.write_text(name)
    os.replace(pointer, root / LATEST)
    for old in sorted(root.glob("step-*"))[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return target


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint under ``root``, or None."""
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    path = root / pointer.read_text().strip()
    if not (path / "state.json").is_file():
        raise FileNotFoundError(f"{pointer} names {path.name}, which is incomplete or missing")
    return path


def load_trainer_state(
    path: Path, *, scheduler: torch.optim.lr_scheduler.LRScheduler
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Restore scheduler and RNG from a checkpoint; return (full optimizer state, state.json).

    The caller loads the optimizer state (onto sharded parameters where needed).
    """
    saved = torch.load(path / "trainer.pt", weights_only=False)
    scheduler.load_state_dict(saved["scheduler"])
    set_rng_state(saved["rng"])
    return saved["optimizer"], json.loads((path / "state.json").read_text())
