"""Evaluation with the paper's metrics: run the multi-step loop on held-out questions, judge, score.

Per question (one trajectory, greedy by default) a :class:`EvalRecord` holds: the judge's outcome
verdict (judge accuracy), exact match, F1/precision/recall, cover match, GSM8K numeric match for
math, the process label (the fraction of the trajectory's steps judged GOOD), the number of
tool calls and the question's stratum (kind x hops, :mod:`swirl.data.strata`). :func:`aggregate`
averages them with 95% intervals (see :mod:`swirl.metrics`), overall and per stratum. The summary
also records the fingerprints of the data (:mod:`swirl.data.fingerprint`) and the model-free
baselines on the same questions (:mod:`swirl.baselines`).

Files in the output directory (all resumable; a rerun continues where a crash stopped):

- ``trajectories.jsonl``: each trajectory as soon as it is generated (unlabelled);
- ``labelled.jsonl``: the same trajectories with the judge's labels;
- ``records.jsonl``: one :class:`EvalRecord` per question;
- ``summary.json`` and ``summary.md``: the aggregate, rewritten at the end of every run.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import msgspec

from swirl.baselines import BaselineScore, baselines
from swirl.data.strata import ALL, stratum_of
from swirl.jsonl import JsonlReader, JsonlWriter
from swirl.judge.base import Judge
from swirl.metrics import Estimate, cover_match, exact_match, f1, mean_interval, numeric_match
from swirl.metrics import wilson_interval as proportion
from swirl.schema import Example, Trajectory

TOOL_KINDS = ("search", "math")


class EvalRecord(msgspec.Struct, kw_only=True):
    """The scores of one question's trajectory."""

    example_id: str
    trajectory_id: str
    task: str
    question: str
    answers: list[str]
    prediction: str | None
    termination: str
    steps: int
    tool_calls: int
    judge: str
    judge_correct: bool | None  # the judge's outcome verdict; None: unknown
    exact_match: bool
    f1: float
    precision: float
    recall: float
    cover_match: bool
    numeric_match: bool | None = None  # math questions only
    process_label: float | None = None  # fraction of steps judged GOOD; None: no steps
    process_unknown: int = 0  # steps whose label is unknown (counted as not GOOD)
    stratum: str = ALL  # the question's kind x hops (swirl.data.strata)


def score(example: Example, trajectory: Trajectory) -> EvalRecord:
    """Score a labelled trajectory (outcome and process labels set) against its example."""
    if trajectory.outcome is None:
        raise ValueError(f"trajectory {trajectory.id} has no outcome label: judge it first")
    prediction = trajectory.final_answer
    text = prediction or ""
    f1_score, precision, recall = f1(text, example.answers)
    labels = [step.process for step in trajectory.steps]
    if any(label is None for label in labels):
        raise ValueError(f"trajectory {trajectory.id} has steps without a process label")
    good = sum(label.verdict is True for label in labels)
    return EvalRecord(
        example_id=example.id,
        trajectory_id=trajectory.id,
        task=example.task,
        question=example.question,
        answers=list(example.answers),
        prediction=prediction,
        termination=trajectory.termination,
        steps=len(trajectory.steps),
        tool_calls=sum(step.action.kind in TOOL_KINDS for step in trajectory.steps),
        judge=trajectory.outcome.judge,
        judge_correct=trajectory.outcome.verdict,
        exact_match=prediction is not None and exact_match(text, example.answers),
        f1=f1_score,
        precision=precision,
        recall=recall,
        cover_match=prediction is not None and cover_match(text, example.answers),
        numeric_match=numeric_match(text, example.answers) if example.task == "math" else None,
        process_label=good / len(labels) if labels else None,
        process_unknown=sum(label.verdict is None for label in labels),
        stratum=stratum_of(example),
    )


class EvalReport(msgspec.Struct, kw_only=True):
    """Averages over questions, each with its 95% interval, and some counts; per stratum the
    :data:`STRATUM_METRICS` (only when the questions fall in more than one stratum); the data's
    fingerprints (``questions``, ``corpus``) and the model-free baselines on the same questions."""

    questions: int
    metrics: dict[str, Estimate]
    judges: list[str]
    terminations: dict[str, int]
    judge_unknown: int
    process_unknown_steps: int
    settings: dict[str, str | int | float | bool | None] = {}
    by_stratum: dict[str, dict[str, Estimate]] = {}
    fingerprints: dict[str, str] = {}
    baselines: list[BaselineScore] = []


# metric name -> (what it is, shown in the Markdown table)
METRIC_NAMES = {
    "judge_accuracy": "judge accuracy (outcome YES)",
    "exact_match": "exact match",
    "f1": "F1",
    "precision": "precision",
    "recall": "recall",
    "cover_match": "cover match",
    "numeric_match": "numeric match (math)",
    "process_label": "mean process label",
    "tool_calls": "tool calls per question",
}
STRATUM_METRICS = ("exact_match", "f1", "judge_accuracy", "process_label")


def aggregate(
    records: Sequence[EvalRecord],
    settings: dict[str, str | int | float | bool | None] | None = None,
) -> EvalReport:
    """Means and 95% intervals: Wilson for 0/1 metrics, normal approximation for the others;
    overall, and per stratum when there is more than one."""
    strata: dict[str, list[EvalRecord]] = {}
    for record in records:
        strata.setdefault(record.stratum, []).append(record)
    report = _aggregate(records, settings)
    if len(strata) > 1:
        report.by_stratum = {
            name: {key: _aggregate(group, None).metrics[key] for key in STRATUM_METRICS}
            for name, group in sorted(strata.items())
        }
    return report


def _aggregate(
    records: Sequence[EvalRecord], settings: dict[str, str | int | float | bool | None] | None
) -> EvalReport:
    count = len(records)

    def share(flag: Callable[[EvalRecord], bool]) -> Estimate:
        return proportion(sum(flag(r) for r in records), count)

    math = [r for r in records if r.numeric_match is not None]
    metrics = {
        "judge_accuracy": share(lambda r: r.judge_correct is True),
        "exact_match": share(lambda r: r.exact_match),
        "f1": mean_interval([r.f1 for r in records], bounds=(0.0, 1.0)),
        "precision": mean_interval([r.precision for r in records], bounds=(0.0, 1.0)),
        "recall": mean_interval([r.recall for r in records], bounds=(0.0, 1.0)),
        "cover_match": share(lambda r: r.cover_match),
        "numeric_match": proportion(sum(r.numeric_match is True for r in math), len(math)),
        "process_label": mean_interval(
            [r.process_label for r in records if r.process_label is not None], bounds=(0.0, 1.0)
        ),
        "tool_calls": mean_interval([float(r.tool_calls) for r in records], bounds=(0.0, 1e9)),
    }
    return EvalReport(
        questions=count,
        metrics=metrics,
        judges=sorted({r.judge for r in records}),
        terminations=dict(Counter(r.termination for r in records)),
        judge_unknown=sum(r.judge_correct is None for r in records),
        process_unknown_steps=sum(r.process_unknown for r in records),
        settings=dict(settings or {}),
    )


def format_estimate(key: str, estimate: Estimate) -> tuple[str, str]:
    """(mean, "[low, high]") of a metric as the tables print it; "-" for an empty metric."""
    if estimate.mean is None:
        return "-", "-"
    digits = 2 if key == "tool_calls" else 3
    return f"{estimate.mean:.{digits}f}", f"[{estimate.low:.{digits}f}, {estimate.high:.{digits}f}]"


def strata_table(report: EvalReport) -> list[str]:
    """Per stratum: questions and each of :data:`STRATUM_METRICS` with its interval."""
    if not report.by_stratum:
        return []
    lines = [
        "| stratum | n | " + " | ".join(METRIC_NAMES[k] for k in STRATUM_METRICS) + " |",
        "|---|---|" + "---|" * len(STRATUM_METRICS),
    ]
    for name, metrics in report.by_stratum.items():
        cells = []
        for key in STRATUM_METRICS:
            mean, interval = format_estimate(key, metrics[key])
            cells.append(mean if mean == "-" else f"{mean} {interval}")
        lines.append(f"| {name} | {metrics['exact_match'].n} | {' | '.join(cells)} |")
    return lines


def baselines_table(scores: Sequence[BaselineScore]) -> list[str]:
    """Each model-free baseline: exact match, F1, questions it answers, exact match per stratum."""
    if not scores:
        return []
    strata = list(scores[0].by_stratum)
    shown = strata if len(strata) > 1 else []
    lines = [
        "| " + " | ".join(["baseline", "exact match", "F1", "answered", *shown]) + " |",
        "|---|---|---|---|" + "---|" * len(shown),
    ]
    for b in scores:
        cells = [f"{b.by_stratum.get(s, 0.0):.3f}" for s in shown]
        row = [b.name, f"{b.exact_match:.3f}", f"{b.f1:.3f}", f"{b.answered} of {b.questions}"]
        lines.append("| " + " | ".join([*row, *cells]) + " |")
    return [*lines, "", *(f"- {b.name}: {b.description}." for b in scores)]


def fingerprint_lines(fingerprints: dict[str, str]) -> list[str]:
    return [
        f"Data fingerprints (sha256): {', '.join(f'{k} {v}' for k, v in fingerprints.items())}."
    ]


def markdown(report: EvalReport) -> str:
    """The report as a Markdown table (metric, value, 95% interval, n) with notes below, then
    the per-stratum table, the model-free baselines and the data's fingerprints."""
    lines = ["| metric | value | 95% interval | n |", "|---|---|---|---|"]
    for key, title in METRIC_NAMES.items():
        estimate = report.metrics[key]
        mean, interval = format_estimate(key, estimate)
        lines.append(f"| {title} | {mean} | {interval} | {estimate.n} |")
    ends = ", ".join(f"{name} {n}" for name, n in sorted(report.terminations.items()))
    lines += [
        "",
        f"{report.questions} questions; judge: {', '.join(report.judges) or '-'}; "
        f"endings: {ends or '-'}.",
        f"Unknown judge verdicts: {report.judge_unknown} outcomes (counted as NO), "
        f"{report.process_unknown_steps} steps (counted as not GOOD).",
        "Intervals: Wilson score for proportions, normal approximation for means.",
    ]
    if report.settings:
        shown = ", ".join(f"{k}={v}" for k, v in report.settings.items())
        lines.append(f"Settings: {shown}.")
    if report.by_stratum:
        lines += ["", "Per stratum (kind x hops):", "", *strata_table(report)]
    if report.baselines:
        lines += ["", "Model-free baselines on the same questions:", ""]
        lines += baselines_table(report.baselines)
    if report.fingerprints:
        lines += ["", *fingerprint_lines(report.fingerprints)]
    return "\n".join(lines) + "\n"


def write_report(report: EvalReport, out_dir: str | os.PathLike[str]) -> None:
    """Write ``summary.json`` and ``summary.md`` into ``out_dir``."""
    out = Path(out_dir)
    (out / "summary.json").write_bytes(msgspec.json.format(msgspec.json.encode(report)) + b"\n")
    (out / "summary.md").write_text(markdown(report))


class _ExampleId(msgspec.Struct):
    example_id: str


def _ids(path: Path) -> set[str]:
    """Example ids in a records or trajectories file (decoding nothing else)."""
    return {r.example_id for r in JsonlReader(path, _ExampleId)} if path.exists() else set()


def evaluate(
    examples: Sequence[Example],
    rollout: Callable[[Iterable[Example]], Iterator[Trajectory]],
    judge: Judge,
    out_dir: str | os.PathLike[str],
    *,
    judge_batch_size: int = 16,
    settings: dict[str, str | int | float | bool | None] | None = None,
    on_record: Callable[[EvalRecord], None] | None = None,
    fingerprints: dict[str, str] | None = None,
    training: Sequence[Example] | None = None,
) -> EvalReport:
    """Evaluate ``examples`` (one trajectory each) and write the files of the module docstring.

    ``fingerprints`` (:func:`swirl.data.fingerprint.data_fingerprints`) go into the summary;
    ``training`` questions give the per-kind majority baseline (:mod:`swirl.baselines`).

    ``rollout`` turns examples into trajectories (e.g. ``swirl.env.run_episodes`` bound to a
    backend and tools); it is only given the examples not yet generated. Trajectories already
    generated but not yet scored (a crash between the two) are judged without rolling out again.
    ``on_record`` is called once per scored question (a progress bar).
    """
    if judge_batch_size < 1:
        raise ValueError(f"judge batch size must be >= 1, got {judge_batch_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    by_id = {example.id: example for example in examples}
    if len(by_id) != len(examples):
        raise ValueError("evaluate: the examples have duplicate ids")
    paths = {name: out / f"{name}.jsonl" for name in ("trajectories", "labelled", "records")}
    with (
        JsonlWriter(paths["trajectories"]) as raw_writer,
        JsonlWriter(paths["labelled"]) as labelled_writer,
        JsonlWriter(paths["records"]) as record_writer,
    ):
        scored = _ids(paths["records"])
        generated = _ids(paths["trajectories"])
        waiting = [
            t
            for t in JsonlReader(paths["trajectories"], Trajectory)
            if t.example_id in by_id and t.example_id not in scored
        ]
        fresh = rollout(e for e in examples if e.id not in scored and e.id not in generated)

        def trajectories() -> Iterator[Trajectory]:
            yield from waiting
            for trajectory in fresh:
                raw_writer.write(trajectory)
                yield trajectory

        batch: list[Trajectory] = []

        def flush() -> None:
            pairs = [(by_id[t.example_id], t) for t in batch]
            for example, labelled in zip(
                (e for e, _ in pairs), judge.judge(pairs, "both"), strict=True
            ):
                labelled_writer.write(labelled)
                record = score(example, labelled)
                record_writer.write(record)
                if on_record is not None:
                    on_record(record)
            batch.clear()

        for trajectory in trajectories():
            batch.append(trajectory)
            if len(batch) == judge_batch_size:
                flush()
        if batch:
            flush()

    records = [r for r in JsonlReader(paths["records"], EvalRecord) if r.example_id in by_id]
    report = aggregate(records, settings)
    report.fingerprints = dict(fingerprints or {})
    report.baselines = baselines(examples, training)
    write_report(report, out)
    return report


def read_eval_records(folder: str | os.PathLike[str]) -> dict[str, EvalRecord]:
    """The evaluation records of an output directory by question id."""
    path = Path(folder) / "records.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path}: not evaluated yet (run the study or evaluation)")
    return {r.example_id: r for r in JsonlReader(path, EvalRecord)}


def metric_values(records: Sequence[EvalRecord], metric: str) -> list[float | None]:
    """One value of ``metric`` per record, in the units of the metric (0/1 for exact match and
    judge accuracy); None where it does not apply (the process label of a trajectory without
    steps)."""
    if metric == "judge_accuracy":
        return [float(r.judge_correct is True) for r in records]
    values = [getattr(r, metric) for r in records]
    return [None if v is None else float(v) for v in values]
