"""PNG plots of training curves (reward, loss, KL ...) from the metrics JSONL."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def plot_curves(
    records: Sequence[dict[str, Any]],
    keys: Sequence[str],
    path: Path,
    *,
    title: str = "training",
) -> Path:
    """One panel per key (x = step); keys with no value in any record are skipped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [k for k in keys if any(r.get(k) is not None for r in records)]
    if not present:
        raise ValueError(f"no records carry any of {list(keys)}")
    figure, axes = plt.subplots(
        len(present), 1, figsize=(7, 2.4 * len(present)), sharex=True, squeeze=False
    )
    for axis, key in zip(axes[:, 0], present, strict=True):
        points = [(r["step"], r[key]) for r in records if key in r and r[key] is not None]
        axis.plot([p[0] for p in points], [p[1] for p in points], marker=".", linewidth=1.2)
        axis.set_ylabel(key)
        axis.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
