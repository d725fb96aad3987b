"""Evaluation: per-question scores, aggregation with intervals, files, resuming after a crash,
and the whole CLI on demo-qa with the embedded model."""

from __future__ import annotations

import json

import msgspec
import pytest
from trajectory_builders import MATH_EXAMPLE, QA_EXAMPLE, record, step, trajectory

from swirl.cli import main
from swirl.evaluate import EvalRecord, aggregate, evaluate, markdown, score
from swirl.jsonl import read_jsonl
from swirl.judge import ReferenceJudge
from swirl.schema import Example, Trajectory

JUDGE = ReferenceJudge()


def labelled(example: Example, steps, id: str = "t") -> Trajectory:
    (result,) = JUDGE.judge([(example, trajectory(example, steps, id=id))], "both")
    return result


def test_score_a_qa_trajectory() -> None:
    record = score(
        QA_EXAMPLE,
        labelled(
            QA_EXAMPLE,
            [
                step("<search_query>Abbey Road</search_query>", "...", ["Abbey Road"]),
                step("<search_query>Abbey Road</search_query>", "...", ["Abbey Road"]),
                step("<answer>Rory Storm and the Hurricanes band</answer>"),
            ],
        ),
    )
    assert record.judge == "reference" and record.judge_correct is False  # not an exact match
    assert not record.exact_match and record.cover_match
    assert record.f1 == pytest.approx(2 * (4 / 5) * 1 / (4 / 5 + 1))
    assert (record.precision, record.recall) == (pytest.approx(0.8), 1.0)
    assert record.numeric_match is None
    assert record.process_label == pytest.approx(1 / 3)  # new doc GOOD, repeat BAD, answer BAD
    assert (record.tool_calls, record.steps, record.termination) == (2, 3, "answer")


def test_score_math_and_unanswered() -> None:
    math = score(
        MATH_EXAMPLE,
        labelled(
            MATH_EXAMPLE,
            [step("<math_exp>48/2</math_exp>", "24"), step("<answer>$72.00</answer>")],
        ),
    )
    assert math.numeric_match and math.judge_correct and math.process_label == 1.0
    assert not math.exact_match  # "7200" vs "72" after normalisation: numeric match is the metric
    nothing = score(QA_EXAMPLE, labelled(QA_EXAMPLE, [step("Hmm.")]))
    assert nothing.prediction is None and not nothing.exact_match and nothing.f1 == 0.0
    assert nothing.process_label == 0.0 and nothing.tool_calls == 0
    empty = score(QA_EXAMPLE, labelled(QA_EXAMPLE, []))
    assert empty.process_label is None  # no steps: left out of the mean


def test_score_needs_labels() -> None:
    with pytest.raises(ValueError, match="no outcome label"):
        score(QA_EXAMPLE, trajectory(QA_EXAMPLE, [step("<answer>x</answer>")]))


def test_aggregate_means_intervals_and_unknowns() -> None:
    records = [
        record(),
        record(judge_correct=None, exact_match=False, f1=0.5, process_label=0.5, tool_calls=3),
        record(judge_correct=False, exact_match=False, f1=0.0, process_label=None, tool_calls=0),
        record(task="math", numeric_match=True, process_unknown=2, termination="step_cap"),
    ]
    report = aggregate(records, {"model": "m"})
    metrics = report.metrics
    assert report.questions == 4 and report.judge_unknown == 1 and report.process_unknown_steps == 2
    assert metrics["judge_accuracy"].mean == 0.5  # unknown counts as NO
    assert metrics["exact_match"].mean == 0.5 and metrics["exact_match"].method == "wilson"
    assert metrics["f1"].mean == pytest.approx(2.5 / 4) and metrics["f1"].method == "normal"
    assert (
        metrics["process_label"].mean == pytest.approx(2.5 / 3) and metrics["process_label"].n == 3
    )
    assert metrics["numeric_match"].mean == 1.0 and metrics["numeric_match"].n == 1
    assert metrics["tool_calls"].mean == pytest.approx(5 / 4) and metrics["tool_calls"].low >= 0
    for estimate in metrics.values():
        assert estimate.low <= estimate.mean <= estimate.high
    assert report.terminations == {"answer": 3, "step_cap": 1}
    table = markdown(report)
    assert "| exact match | 0.500 | [" in table and "| 4 |" in table
    assert "1 outcomes (counted as NO), 2 steps" in table and "model=m" in table


def test_aggregate_nothing() -> None:
    report = aggregate([])
    assert report.questions == 0 and all(e.mean is None for e in report.metrics.values())
    assert "| exact match | - | - | 0 |" in markdown(report)


def scripted_rollout(answers: dict[str, str], calls: list[str], crash_after: int | None = None):
    """A rollout that answers each question with a fixed text (the real environment runs in the
    CLI test below); it can crash after some trajectories, like a killed run."""

    def rollout(examples):
        for count, example in enumerate(examples):
            if crash_after is not None and count == crash_after:
                raise KeyboardInterrupt
            calls.append(example.id)
            yield trajectory(
                example, [step(f"<answer>{answers[example.id]}</answer>")], id=f"{example.id}#0"
            )

    return rollout


def test_evaluate_writes_files_and_resumes_after_a_crash(tmp_path) -> None:
    examples = [
        Example(id=f"q{i}", question=f"Q{i}?", answers=[f"a{i}"], dataset="hand") for i in range(5)
    ]
    answers = {f"q{i}": f"a{i}" if i % 2 == 0 else "wrong" for i in range(5)}
    calls: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        evaluate(
            examples, scripted_rollout(answers, calls, crash_after=3), JUDGE, tmp_path,
            judge_batch_size=2,
        )  # fmt: skip
    # Two were judged and scored; the third was generated but its batch never judged.
    assert len(read_jsonl(tmp_path / "records.jsonl", EvalRecord)) == 2
    assert len(read_jsonl(tmp_path / "trajectories.jsonl", Trajectory)) == 3

    seen: list[EvalRecord] = []
    report = evaluate(
        examples, scripted_rollout(answers, calls), JUDGE, tmp_path, on_record=seen.append
    )
    assert calls == ["q0", "q1", "q2", "q3", "q4"]  # q2 was judged from disk, not rolled out again
    assert [r.example_id for r in seen] == ["q2", "q3", "q4"]
    records = read_jsonl(tmp_path / "records.jsonl", EvalRecord)
    assert sorted(r.example_id for r in records) == [f"q{i}" for i in range(5)]
    assert report.questions == 5 and report.metrics["exact_match"].mean == pytest.approx(3 / 5)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["metrics"]["exact_match"]["mean"] == pytest.approx(0.6)
    assert "| exact match | 0.600 |" in (tmp_path / "summary.md").read_text()
    labelled_file = read_jsonl(tmp_path / "labelled.jsonl", Trajectory)
    assert all(t.outcome is not None for t in labelled_file)

    # Everything done: a rerun rolls out nothing and reports the same.
    again = evaluate(examples, scripted_rollout(answers, calls), JUDGE, tmp_path)
    assert calls == ["q0", "q1", "q2", "q3", "q4"]
    assert msgspec.json.encode(again) == msgspec.json.encode(report)


def test_summary_per_stratum_with_baselines_and_fingerprints(tmp_path) -> None:
    """On 10 demo-hops validation questions (2 per stratum), answering only the 1-hop ones
    right: exact match 1 there and 0 elsewhere; the summary records the data's fingerprints and
    the model-free baselines on the same questions."""
    from swirl.corpus import corpus_fingerprint
    from swirl.data import load_corpus, load_examples
    from swirl.data.fingerprint import evaluation_fingerprints, questions_fingerprint

    examples = load_examples("demo-hops", split="validation", limit=10)
    answers = {e.id: e.answers[0] if e.metadata["hops"] == 1 else "?" for e in examples}
    prints = evaluation_fingerprints(examples, "demo-hops", split="validation")
    assert prints == {
        "questions": questions_fingerprint(examples),
        "corpus": corpus_fingerprint(load_corpus("demo-hops")),
    }
    training = load_examples("demo-hops", split="train")
    report = evaluate(
        examples, scripted_rollout(answers, []), JUDGE, tmp_path, fingerprints=prints,
        training=training,
    )  # fmt: skip
    em = {name: metrics["exact_match"].mean for name, metrics in report.by_stratum.items()}
    assert em == {
        "attribute 1-hop": 1.0,
        "bridge 2-hop": 0.0,
        "bridge 3-hop": 0.0,
        "comparison 2-hop": 0.0,
        "comparison 3-hop": 0.0,
    }
    assert all(m["exact_match"].n == 2 for m in report.by_stratum.values())
    assert [b.name for b in report.baselines][-1] == "majority per kind"
    assert report.baselines[0].answered == 0  # no question offers options
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["fingerprints"] == prints and len(summary["baselines"]) == 4
    text = (tmp_path / "summary.md").read_text()
    assert "| attribute 1-hop | 2 | 1.000 [" in text
    assert "| majority per kind | " in text and f"questions {prints['questions']}" in text
    # one stratum only (or none annotated): no per-stratum table
    assert aggregate([record(), record()]).by_stratum == {}
    assert (
        evaluation_fingerprints(examples, "demo-hops", split="test", retriever_url="http://r")[
            "retriever"
        ]
        == "http://r"
    )


@pytest.mark.slow
def test_cli_pipeline_on_demo_qa(tmp_path, monkeypatch, capsys, request) -> None:
    """generate -> judge (reference) -> filter (each strategy) -> eval, all from the CLI, with the
    embedded model on two demo-qa questions."""
    import torch

    monkeypatch.setenv("SWIRL_JUDGE", "")
    # --threads 1 sets torch's threads for this process: put them back for the tests after this.
    threads = torch.get_num_threads()
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    traj, labelled_path = tmp_path / "traj.jsonl", tmp_path / "labelled.jsonl"
    common = ["--data", "demo-qa", "--max-new-tokens", "48", "--threads", "1"]
    assert main(["generate", *common, "--limit", "2", "--out", str(traj)]) == 0
    assert main(["judge", "--in", str(traj), "--out", str(labelled_path), "--data", "demo-qa"]) == 0
    labelled_trajectories = read_jsonl(labelled_path, Trajectory)
    assert len(labelled_trajectories) == 2
    assert all(s.process.judge == "reference" for t in labelled_trajectories for s in t.steps)
    for strategy in ("none", "process", "outcome", "process+outcome"):
        out = tmp_path / f"{strategy}.jsonl"
        assert (
            main(["filter", "--in", str(labelled_path), "--out", str(out), "--strategy", strategy])
            == 0
        )
        assert out.exists()
    assert len(read_jsonl(tmp_path / "none.jsonl", Trajectory)) == 2
    capsys.readouterr()
    assert main(["eval", *common, "--limit", "2", "--out", str(tmp_path / "eval")]) == 0
    printed = capsys.readouterr().out
    assert "| exact match |" in printed and "judge: reference" in printed
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["questions"] == 2 and summary["settings"]["split"] == "test"
    from swirl.data import load_examples
    from swirl.data.fingerprint import questions_fingerprint

    evaluated = load_examples("demo-qa", split="test", limit=2)
    assert summary["fingerprints"]["questions"] == questions_fingerprint(evaluated)
    assert {b["name"] for b in summary["baselines"]} >= {"options: random", "majority per kind"}
