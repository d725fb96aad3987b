"""The LLM judge's bookkeeping (cache, retries, votes, failures) over a scripted backend, and the
real thing: the embedded model judging through the local transformers backend."""

from __future__ import annotations

import pytest
from trajectory_builders import MATH_EXAMPLE, QA_EXAMPLE, step, trajectory

from swirl.backends import SamplingParams
from swirl.judge.cache import JudgeCache
from swirl.judge.llm import LLMJudge


class ScriptedBackend:
    """Replies by a rule on the prompt text; counts every prompt it is asked (a unit-test stand-in
    for a model; the real backends are tested below and in test_judge_http.py)."""

    name = "scripted"

    def __init__(self, rule) -> None:
        self.rule = rule
        self.calls: list[tuple[str, SamplingParams]] = []
        self.systems: list[str] = []

    def chat(self, conversations, params: SamplingParams) -> list[str]:
        replies = []
        for conversation in conversations:
            text = conversation[-1]["content"]
            self.calls.append((text, params))
            self.systems.append(conversation[0]["content"])
            replies.append(self.rule(text, params, len(self.calls)))
        return replies


def by_last_step(text: str, params, call: int) -> str:
    """GOOD for searches, BAD for answers; YES for outcome questions."""
    if "answer key" in text:
        return "The answer agrees with the key.\nVerdict: YES"
    last = text.rsplit("which you grade:", 1)[1]
    return "Reasoning.\nVerdict: " + ("GOOD" if "search_query" in last else "BAD")


def qa_batch():
    good = trajectory(
        QA_EXAMPLE,
        [
            step("<search_query>Ringo Starr</search_query>", "He joined the Hurricanes.", ["R"]),
            step("<answer>the Hurricanes</answer>"),
        ],
        id="a",
    )
    unanswered = trajectory(QA_EXAMPLE, [step("I wonder.")], id="b")
    return [(QA_EXAMPLE, good), (QA_EXAMPLE, unanswered)]


def test_labels_come_from_the_replies_and_name_the_judge() -> None:
    backend = ScriptedBackend(by_last_step)
    judge = LLMJudge(backend, name="llm:scripted")
    first, second = judge.judge(qa_batch(), "both")
    assert [s.process.verdict for s in first.steps] == [True, False]
    assert first.outcome.verdict is True
    assert second.steps[0].process.verdict is False
    # no final answer: NO without asking
    assert second.outcome.verdict is False and "not asked" in second.outcome.explanation
    labels = [s.process for s in (*first.steps, *second.steps)] + [first.outcome, second.outcome]
    assert {label.judge for label in labels} == {"llm:scripted"}
    assert "Reasoning." in first.steps[0].process.explanation
    assert len(backend.calls) == 4  # 3 steps + 1 outcome
    assert all(params.temperature == 0 and not params.stop_at_action for _, params in backend.calls)


def test_second_run_makes_zero_backend_calls(tmp_path) -> None:
    path = tmp_path / "judge.sqlite"
    first_backend = ScriptedBackend(by_last_step)
    with JudgeCache(path) as cache:
        labelled = LLMJudge(first_backend, name="j", cache=cache).judge(qa_batch(), "both")
    assert len(first_backend.calls) == 4

    second_backend = ScriptedBackend(lambda *a: pytest.fail("the cache should have answered"))
    with JudgeCache(path) as cache:
        judge = LLMJudge(second_backend, name="j", cache=cache)
        again = judge.judge(qa_batch(), "both")
    assert second_backend.calls == [] and judge.stats.backend_calls == 0
    assert judge.stats.cache_hits == 4
    assert again == labelled

    # another judge model, or other settings, do not share entries
    third = ScriptedBackend(by_last_step)
    with JudgeCache(path) as cache:
        LLMJudge(third, name="other", cache=cache).judge(qa_batch(), "process")
    assert len(third.calls) == 3


def test_unparseable_replies_are_retried_then_unknown() -> None:
    def flaky(text, params, call):
        if "answer key" in text:
            return "I refuse to say."  # never parseable
        return "hmm..." if params.temperature == 0 else "Verdict: GOOD"

    backend = ScriptedBackend(flaky)
    judge = LLMJudge(backend, retries=2, retry_temperature=0.5)
    (labelled, _) = judge.judge(qa_batch(), "both")
    assert [s.process.verdict for s in labelled.steps] == [True, True]
    assert labelled.outcome.verdict is None  # unknown, never GOOD
    assert "no verdict could be read" in labelled.outcome.explanation
    temperatures = [params.temperature for text, params in backend.calls if "answer key" in text]
    assert temperatures == [0.0, 0.5, 0.5]  # greedy, then two sampled retries
    assert judge.stats.unknown == 1


def test_retries_zero_gives_unknown_at_once() -> None:
    backend = ScriptedBackend(lambda *a: "no idea")
    (labelled,) = LLMJudge(backend, retries=0).judge(qa_batch()[:1], "process")
    assert [s.process.verdict for s in labelled.steps] == [None, None]
    assert len(backend.calls) == 2


def test_majority_vote() -> None:
    # per sample seed -> a fixed verdict pattern: GOOD, BAD, GOOD
    def voter(text, params, call):
        return "Verdict: BAD" if call % 3 == 2 else "Verdict: GOOD"

    example, single = QA_EXAMPLE, trajectory(QA_EXAMPLE, [step("<search_query>x</search_query>")])
    judge = LLMJudge(ScriptedBackend(voter), samples=3, temperature=0.8)
    (labelled,) = judge.judge([(example, single)], "process")
    label = labelled.steps[0].process
    assert label.verdict is True
    assert label.explanation.startswith("votes: 2 GOOD, 1 BAD, 0 unknown")

    tie = LLMJudge(
        ScriptedBackend(lambda t, p, c: "GOOD" if c % 2 else "BAD"), samples=2, temperature=1
    )
    (labelled,) = tie.judge([(example, single)], "process")
    assert labelled.steps[0].process.verdict is None

    with pytest.raises(ValueError, match="temperature > 0"):
        LLMJudge(ScriptedBackend(voter), samples=3)


class BrokenBackend(ScriptedBackend):
    """Fails any call that contains a prompt mentioning 'Ringo' (a request the server rejects)."""

    def chat(self, conversations, params):
        if any("Ringo" in c[-1]["content"] for c in conversations):
            self.calls.append(("failed", params))
            raise ConnectionError("server said 500")
        return super().chat(conversations, params)


def test_failed_requests_are_unknown_not_cached_and_do_not_sink_the_batch(tmp_path) -> None:
    backend = BrokenBackend(by_last_step)
    with JudgeCache(tmp_path / "c.sqlite") as cache:
        judge = LLMJudge(backend, cache=cache)
        first, second = judge.judge(qa_batch(), "both")
        assert len(cache) == 2  # the outcome of "a" (no Ringo in it) and the step of "b"
    # step 0 of "a" mentions Ringo, and every later prompt of "a" quotes it
    assert [s.process.verdict for s in first.steps] == [None, None]
    assert (
        "judge request failed: ConnectionError: server said 500"
        in first.steps[0].process.explanation
    )
    assert first.outcome.verdict is True
    assert second.steps[0].process.verdict is False  # its neighbour in the batch was fine
    assert judge.stats.failed == 2


def test_math_prompts_and_identical_prompts_asked_once() -> None:
    backend = ScriptedBackend(lambda t, p, c: "Verdict: GOOD")
    single = trajectory(MATH_EXAMPLE, [step("<math_exp>48/2</math_exp>", "24")], id="m")
    judge = LLMJudge(backend)
    labelled = judge.judge([(MATH_EXAMPLE, single), (MATH_EXAMPLE, single)], "process")
    assert [t.steps[0].process.verdict for t in labelled] == [True, True]
    assert len(backend.calls) == 1 and "calculator" in backend.systems[0]


@pytest.mark.slow
def test_the_embedded_model_judges_through_the_local_backend(embedded_model, tmp_path) -> None:
    """The real path: transformers backend, chat template, parse, cache. A 135M model is a weak
    judge, so the test checks that every label is a recorded verdict or unknown, not its quality."""
    from swirl.backends.hf import HFBackend

    model, tokenizer = embedded_model
    backend = HFBackend(model, tokenizer, name="smollm2-135m")
    batch = qa_batch()[:1]  # two steps and an outcome: three short generations

    def make(cache):
        return LLMJudge(backend, name="hf:smollm2-135m", cache=cache, retries=0, max_new_tokens=24)

    with JudgeCache(tmp_path / "c.sqlite") as cache:
        judge = make(cache)
        labelled = judge.judge(batch, "both")
        assert judge.stats.backend_calls == 3
        again = make(cache)
        assert again.judge(batch, "both") == labelled
        assert again.stats.backend_calls == 0
    (result,) = labelled
    for label in [*(s.process for s in result.steps), result.outcome]:
        assert label.judge == "hf:smollm2-135m" and label.verdict in (True, False, None)
        assert label.explanation
