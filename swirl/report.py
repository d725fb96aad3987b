"""The report of a ``swirl run``: before/after metrics (overall and per stratum), the data's
fingerprints, filtering, training, and where the time went (``report.md`` plus
``report_metrics.png`` and ``report_time.png`` in the run directory)."""

from __future__ import annotations

from pathlib import Path

import msgspec

from swirl.evaluate import METRIC_NAMES, EvalReport, format_estimate
from swirl.filtering import read_labels, summarize
from swirl.metrics import Estimate
from swirl.training.metrics_log import read_metrics

# Metrics drawn in the PNG (all in [0, 1]).
PLOTTED = ("judge_accuracy", "exact_match", "f1", "process_label")


def evaluations(run: Path) -> dict[str, EvalReport]:
    """Evaluation summaries of a run directory, in pipeline order: base, rounds, SFT."""
    found: dict[str, EvalReport] = {}
    candidates = [("base model", run / "eval-base")]
    rounds = sorted(run.glob("round-*"), key=lambda p: int(p.name.split("-")[1]))
    candidates += [(f"SWiRL {p.name}", p / "eval") for p in rounds]
    candidates.append(("SFT (same data, same budget)", run / "sft" / "eval"))
    for title, folder in candidates:
        summary = folder / "summary.json"
        if summary.exists():
            found[title] = msgspec.json.decode(summary.read_bytes(), type=EvalReport)
    return found


def _cell(report: EvalReport, key: str) -> str:
    mean, interval = format_estimate(key, report.metrics[key])
    return mean if mean == "-" else f"{mean} {interval}"


def metrics_table(reports: dict[str, EvalReport]) -> list[str]:
    titles = list(reports)
    lines = [f"| metric | {' | '.join(titles)} |", "|---|" + "---|" * len(titles)]
    for key, name in METRIC_NAMES.items():
        if all(r.metrics[key].mean is None for r in reports.values()):
            continue
        lines.append(f"| {name} | {' | '.join(_cell(r, key) for r in reports.values())} |")
    counts = ", ".join(f"{title}: {r.questions}" for title, r in reports.items())
    lines += ["", f"Held-out questions per evaluation ({counts}); mean [95% interval]."]
    return lines


def strata_table(reports: dict[str, EvalReport]) -> list[str]:
    """Exact match per stratum (kind x hops) of every evaluation; none without strata."""
    strata = sorted({s for r in reports.values() for s in r.by_stratum})
    if not strata:
        return []
    titles = list(reports)
    lines = [f"| exact match | {' | '.join(titles)} |", "|---|" + "---|" * len(titles)]
    for stratum in strata:
        cells = [
            _estimate(r.by_stratum[stratum]["exact_match"]) if stratum in r.by_stratum else "-"
            for r in reports.values()
        ]
        lines.append(f"| {stratum} | {' | '.join(cells)} |")
    return lines


def _estimate(estimate: Estimate) -> str:
    mean, interval = format_estimate("exact_match", estimate)
    return mean if mean == "-" else f"{mean} {interval}"


def data_lines(reports: dict[str, EvalReport]) -> list[str]:
    """The fingerprints of the data each evaluation saw (sha256)."""
    lines = []
    for title, report in reports.items():
        shown = ", ".join(f"{k} `{v}`" for k, v in report.fingerprints.items()) or "not recorded"
        lines.append(f"- {title}: {shown}")
    return lines


def training_lines(run: Path) -> list[str]:
    lines = []
    rounds = sorted(run.glob("round-*/train"), key=lambda p: int(p.parent.name.split("-")[1]))
    for train in [*rounds, run / "sft" / "train"]:
        metrics_path = train / "metrics.jsonl"
        if not metrics_path.exists():
            continue
        records = read_metrics(metrics_path)
        if not records:
            continue
        rewards = [r["reward"] for r in records if r.get("reward") is not None]
        ratio = sum(r["pack_ratio"] for r in records) / len(records)
        speed = sum(r["tokens_per_s"] for r in records) / len(records)
        reward = ""
        if rewards:  # SFT logs none
            half = max(len(rewards) // 2, 1)
            first, last = sum(rewards[:half]) / half, sum(rewards[-half:]) / half
            reward = f" mean step reward {first:.3f} (first half) -> {last:.3f} (second half);"
        lines.append(
            f"- `{train.relative_to(run)}`: {len(records)} steps;{reward} packed {ratio:.2f}x "
            f"fewer tokens than the naive layout; {speed:.0f} tokens/s in the update; curves: "
            f"`{(train / 'training_curves.png').relative_to(run)}`"
        )
    return lines


def filtering_lines(run: Path) -> list[str]:
    lines = []
    for labelled in sorted(run.glob("round-*/labelled.jsonl")):
        counts = summarize(read_labels(labelled))
        shown = ", ".join(f"{c.strategy} {c.trajectories} ({c.steps} steps)" for c in counts)
        lines.append(f"- `{labelled.parent.name}`: trajectories kept per strategy: {shown}")
    return lines


def plot_metrics(reports: dict[str, EvalReport], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figure, axis = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(len(reports), 1)
    x = np.arange(len(PLOTTED))
    for index, (title, report) in enumerate(reports.items()):
        means, errors = [], [[], []]
        for key in PLOTTED:
            e = report.metrics[key]
            mean = e.mean or 0.0
            means.append(mean)
            errors[0].append(mean - (e.low if e.low is not None else mean))
            errors[1].append((e.high if e.high is not None else mean) - mean)
        axis.bar(x + index * width, means, width, yerr=errors, capsize=3, label=title)
    axis.set_xticks(
        x + width * (len(reports) - 1) / 2, [METRIC_NAMES[k] for k in PLOTTED], fontsize=8
    )
    axis.set_ylim(0, 1)
    axis.set_ylabel("held-out mean (95% interval)")
    axis.legend(fontsize=8)
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_time(timings: dict[str, float], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 0.45 * len(timings) + 1))
    names = list(timings)
    axis.barh(names, [timings[n] / 60 for n in names])
    axis.invert_yaxis()
    axis.set_xlabel("minutes")
    axis.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def write_run_report(run: Path, timings: dict[str, float]) -> Path:
    """Write ``report.md`` (and its PNGs) for the run directory ``run``; return its path."""
    reports = evaluations(run)
    lines = ["# swirl run report", ""]
    config = run / "run_config.json"
    if config.exists():
        lines += ["Configuration: `run_config.json`.", ""]
    if reports:
        lines += ["## Held-out evaluation", "", *metrics_table(reports), ""]
        strata = strata_table(reports)
        if strata:
            lines += ["Per stratum (kind x hops), mean [95% interval]:", "", *strata, ""]
        lines += ["![metrics](report_metrics.png)", ""]
        lines += ["## Data (fingerprints, sha256)", "", *data_lines(reports), ""]
        plot_metrics(reports, run / "report_metrics.png")
    filtering = filtering_lines(run)
    if filtering:
        lines += ["## Filtering", "", *filtering, ""]
    training = training_lines(run)
    if training:
        lines += ["## Training", "", *training, ""]
    if timings:
        total = sum(timings.values())
        lines += ["## Where the time went", "", "| stage | minutes | share |", "|---|---|---|"]
        lines += [
            f"| {name} | {seconds / 60:.1f} | {seconds / total:.0%} |"
            for name, seconds in timings.items()
        ]
        lines += [f"| total | {total / 60:.1f} | 100% |", "", "![time](report_time.png)", ""]
        plot_time(timings, run / "report_time.png")
    path = run / "report.md"
    path.write_text("\n".join(lines))
    return path
