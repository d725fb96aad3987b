"""Choosing each trained arm's values on the validation split (a study's ``[tuning]`` grid).

Every tuned arm runs every point of the grid at every tuning seed (the same number of runs per
arm), evaluated on the validation questions; the base arm runs once there for reference. An
arm's score at a point is the mean over the tuning seeds of its mean selection metric; it takes
the best point (ties: the first in grid order). ``tuning.json`` records every score and the
chosen values, ``tuning.md`` shows them, and the study's test cells train with the chosen
values. Cells live under ``tuning/ARM/POINT/seed-S`` (``tuning/ARM/seed-S`` for base).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

import msgspec

from swirl.evaluate import METRIC_NAMES, metric_values, read_eval_records
from swirl.study import (
    ArmConfig,
    StudyConfig,
    cell_eval_dir,
    is_deterministic,
    point_name,
    with_train,
)


@dataclass(frozen=True)
class TuningCell:
    """One run of the grid: ``arm`` with ``point`` applied, at ``seed``, under ``root``."""

    arm: ArmConfig
    point: dict[str, Any]
    seed: int
    root: Path


def tuning_cells(config: StudyConfig, out: Path) -> list[TuningCell]:
    """Every cell of the grid, and each deterministic arm once (at the first tuning seed)."""
    if config.tuning is None:
        return []
    top = out / "tuning"
    cells = [
        TuningCell(
            arm, {}, config.tuning.seeds[0], top / arm.name / f"seed-{config.tuning.seeds[0]}"
        )
        for arm in config.arms
        if is_deterministic(arm)
    ]
    for arm in config.tuned_arms():
        for point in config.tuning.points():
            for seed in config.tuning.seeds:
                root = top / arm.name / point_name(point) / f"seed-{seed}"
                cells.append(TuningCell(with_train(arm, point), point, seed, root))
    return cells


class PointScore(msgspec.Struct, kw_only=True):
    """An arm at one grid point: the selection metric per tuning seed, and their mean."""

    point: dict[str, Any]
    per_seed: dict[str, float]
    mean: float


class ArmTuning(msgspec.Struct, kw_only=True):
    arm: str
    runs: int
    points: list[PointScore]
    chosen: dict[str, Any]


class TuningResults(msgspec.Struct, kw_only=True):
    """The grid, what every tuned arm scored at each point, and what it chose."""

    metric: str
    seeds: list[int]
    grid: dict[str, list[Any]]
    validation_questions: int
    arms: list[ArmTuning]
    reference: dict[str, float]  # deterministic arms: their one validation run's score


def _score(cell: TuningCell, metric: str) -> tuple[float, int]:
    """The cell's mean ``metric`` over its validation questions, and their number."""
    records = list(read_eval_records(cell_eval_dir(cell.root, cell.arm)).values())
    values = [v for v in metric_values(records, metric) if v is not None]
    return (fmean(values) if values else 0.0), len(records)


def tuning_results(out: Path, config: StudyConfig) -> TuningResults:
    """Score every cell of the grid (all must have run) and choose each arm's values."""
    tuning = config.tuning
    if tuning is None:
        raise ValueError("this study has no [tuning] grid")
    cells = tuning_cells(config, out)
    scores = {(c.arm.name, point_name(c.point), c.seed): _score(c, tuning.metric) for c in cells}
    arms = []
    for arm in config.tuned_arms():
        points = []
        for point in tuning.points():
            per_seed = {str(s): scores[(arm.name, point_name(point), s)][0] for s in tuning.seeds}
            points.append(PointScore(point=point, per_seed=per_seed, mean=fmean(per_seed.values())))
        best = max(points, key=lambda p: p.mean)  # max keeps the first of equal means
        arms.append(
            ArmTuning(
                arm=arm.name, runs=len(points) * len(tuning.seeds), points=points, chosen=best.point
            )
        )
    return TuningResults(
        metric=tuning.metric,
        seeds=list(tuning.seeds),
        grid=tuning.grid,
        validation_questions=max((n for _, n in scores.values()), default=0),
        arms=arms,
        reference={c.arm.name: scores[(c.arm.name, "", c.seed)][0] for c in cells if not c.point},
    )


def tuning_markdown(results: TuningResults) -> list[str]:
    """The grid's scores per arm (the chosen point in bold) and the chosen values."""
    metric = METRIC_NAMES[results.metric]
    seeds = ", ".join(map(str, results.seeds))
    grid = "; ".join(f"{key} in {values}" for key, values in results.grid.items())
    points = [point_name(p.point) for p in results.arms[0].points] if results.arms else []
    lines = [
        f"Grid: {grid}. Every tuned arm ran every point at validation seeds {seeds} "
        f"({results.validation_questions} validation questions); selection metric: {metric}, "
        "mean over the seeds (ties: the first point in grid order).",
        "",
        "| " + " | ".join(["arm", "runs", *points, "chosen"]) + " |",
        "|---|---|" + "---|" * (len(points) + 1),
    ]
    for arm in results.arms:
        cells = [
            f"**{p.mean:.3f}**" if p.point == arm.chosen else f"{p.mean:.3f}" for p in arm.points
        ]
        lines.append(f"| {arm.arm} | {arm.runs} | {' | '.join(cells)} | {point_name(arm.chosen)} |")
    for name, score in results.reference.items():
        lines.append(f"| {name} (untrained, for reference) | 1 | {score:.3f} |")
    return lines


def write_tuning_report(out: Path, config: StudyConfig) -> dict[str, dict[str, Any]]:
    """Write ``tuning.json`` and ``tuning.md``; return each tuned arm's chosen values."""
    results = tuning_results(out, config)
    (out / "tuning.json").write_bytes(msgspec.json.format(msgspec.json.encode(results)))
    text = ["# swirl study: tuning on the validation split", "", *tuning_markdown(results)]
    (out / "tuning.md").write_text("\n".join(text) + "\n")
    return {arm.arm: arm.chosen for arm in results.arms}


def read_tuning(out: Path) -> TuningResults | None:
    """``tuning.json`` of a study directory, or None when it has none."""
    path = out / "tuning.json"
    return msgspec.json.decode(path.read_bytes(), type=TuningResults) if path.exists() else None
