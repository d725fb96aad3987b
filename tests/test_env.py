"""The environment loop: terminations, observations, token-exact states, seeds and resume.

Loop logic is tested with a scripted backend (fixed turn texts, the real tokenizer, the real
calculator and a real bm25 index); the same properties are then checked on the real model.
"""

from __future__ import annotations

import msgspec
import pytest

from swirl.backends.base import Completion, SamplingParams
from swirl.decompose import decompose
from swirl.env import TRUNCATION_MARK, EnvConfig, run_episodes
from swirl.prompts import ChatTurns
from swirl.schema import Example, Trajectory
from swirl.tags import find_action_stop
from swirl.tools.calculator import Calculator


class RecordingBackend:
    """Wraps a backend and records every prompt it was given (the sequences the model saw)."""

    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.tokenizer = inner.tokenizer
        self.context_length = inner.context_length
        self.prompts: list[list[int]] = []
        self.calls = 0

    def generate(self, prompts, params):
        self.calls += 1
        self.prompts += [list(p) for p in prompts]
        return self.inner.generate(prompts, params)

    def chat(self, conversations, params):
        return self.inner.chat(conversations, params)


class ScriptedBackend:
    """Answers each question with a fixed list of turn texts (unit-test stand-in for a model)."""

    name = "scripted"

    def __init__(self, tokenizer, scripts: dict[str, list[str]], context_length: int = 8192):
        self.tokenizer = tokenizer
        self.scripts = scripts
        self.context_length = context_length

    def generate(self, prompts, params):
        out = []
        for prompt, p in zip(prompts, params, strict=True):
            text = self.tokenizer.decode(prompt)
            question = max(self.scripts, key=lambda q: text.rfind(f"Question: {q}"))
            tail = text[text.rfind(f"Question: {question}") :]
            step = tail.count("<|im_start|>assistant") - 1
            turn = self.scripts[question][step]
            ids = self.tokenizer.encode(turn, add_special_tokens=False)
            if len(ids) > p.max_new_tokens:
                ids, reason = ids[: p.max_new_tokens], "length"
            elif find_action_stop(turn) >= 0:
                reason = "action"
            else:
                ids, reason = [*ids, self.tokenizer.eos_token_id], "eos"
            out.append(
                Completion(token_ids=ids, text=self.tokenizer.decode(ids), finish_reason=reason)
            )
        return out

    def chat(self, conversations, params):
        raise NotImplementedError


class StreamingScriptedBackend(ScriptedBackend):
    """The scripted turns through a stream that batches continuously: every live request gains
    one token per tick, and a request submitted while the stream runs joins at the next tick.
    Records the tick at which each (question, step) turn was submitted and finished."""

    def stream(self):
        backend = self

        class Stream:
            def __init__(self):
                self.queue, self.tick = [], 0
                self.submitted, self.finished = {}, {}

            def submit(self, prompt, params, key):
                (completion,) = backend.generate([prompt], [params])
                turn = _turn_key(backend.tokenizer, prompt)
                self.submitted[turn] = self.tick
                self.queue.append([len(completion.token_ids), key, completion, turn])

            def __iter__(self):
                while self.queue:
                    self.tick += 1
                    for item in self.queue:
                        item[0] -= 1
                    done = [item for item in self.queue if item[0] <= 0]
                    self.queue = [item for item in self.queue if item[0] > 0]
                    for _, key, completion, turn in done:
                        self.finished[turn] = self.tick
                        yield key, completion

        backend.last_stream = Stream()
        return backend.last_stream


def _turn_key(tokenizer, prompt) -> tuple[str, int]:
    text = tokenizer.decode(prompt)
    question = text[text.rfind("Question: ") + len("Question: ") :].split("<")[0].strip()
    return question, text[text.rfind("Question: ") :].count("<|im_start|>assistant") - 1


@pytest.fixture(scope="module")
def tokenizer():
    from swirl.model import load_tokenizer

    return load_tokenizer()


def math(id_: str, question: str) -> Example:
    return Example(id=id_, question=question, answers=["1"], dataset="t", task="math")


def assert_states_are_what_the_model_saw(trajectories: list[Trajectory], prompts: list[list[int]]):
    seen = {tuple(p) for p in prompts}
    for trajectory in trajectories:
        for state in decompose(trajectory):
            assert tuple(state.state_token_ids) in seen, (trajectory.id, state.step_index)


def test_terminations_observations_and_exact_states(tokenizer):
    scripts = {
        "A?": [
            "<math_exp>48 / 2</math_exp>",
            "Half. <math_exp>24 + 48</math_exp>",
            "<answer>72</answer>",
        ],
        "B?": ["<math_exp>1+1</math_exp>"] * 5,
        "C?": ["I will not use a tag."],
        "D?": ["<search_query>x</search_query>"],
        "E?": ["<answer></answer>"],
        "F?": ["word " * 50],
    }
    backend = RecordingBackend(ScriptedBackend(tokenizer, scripts))
    examples = [math(q[0], q) for q in scripts]
    config = EnvConfig(max_steps=3, max_live_episodes=4)
    params = SamplingParams(max_new_tokens=20, seed=1)
    trajectories = {
        t.example_id: t
        for t in run_episodes(examples, backend, tools=[Calculator()], params=params, config=config)
    }
    a = trajectories["A"]
    assert a.termination == "answer" and a.final_answer == "72"
    assert [s.result for s in a.steps] == ["24", "72", ""]
    assert (
        a.steps[0].observation_text
        == "<|im_end|>\n<|im_start|>user\n48 / 2 -> 24<|im_end|>\n<|im_start|>assistant\n"
    )
    turns = ChatTurns.from_tokenizer(tokenizer)
    assert a.steps[0].observation_token_ids == (
        turns.user_open + tokenizer.encode("48 / 2 -> 24") + turns.assistant_open
    )
    assert a.steps[-1].observation_token_ids == []
    assert trajectories["B"].termination == "step_cap" and len(trajectories["B"].steps) == 3
    assert (
        trajectories["B"].steps[-1].result == "2"
        and trajectories["B"].steps[-1].observation_token_ids == []
    )
    c = trajectories["C"]
    assert c.termination == "invalid_action" and c.steps[0].action.kind == "none"
    assert c.steps[0].token_ids[-1] == tokenizer.eos_token_id
    d = trajectories["D"]  # a search in a task with no search tool
    assert (
        d.termination == "invalid_action"
        and d.steps[0].action.error == "no search tool in this task"
    )
    assert trajectories["E"].steps[0].action.error == "empty <answer>"
    assert (
        trajectories["F"].termination == "length"
        and len(trajectories["F"].steps[0].token_ids) == 20
    )
    # Token-in/token-out: every decomposed state is exactly a sequence the backend was given.
    assert_states_are_what_the_model_saw(list(trajectories.values()), backend.prompts)
    assert len(backend.prompts) == sum(len(t.steps) for t in trajectories.values())
    # One generate call per round, not per turn: rounds (A B C D), (A B E F) after C and D end and
    # E and F refill, then (A B).
    assert backend.calls == 3
    for t in trajectories.values():  # records round-trip through the schema
        assert msgspec.json.decode(msgspec.json.encode(t), type=Trajectory) == t


def test_an_episodes_next_turn_is_submitted_as_soon_as_its_tool_returns(tokenizer):
    """With a stream that batches continuously, a short turn's episode goes on (tool, next turn)
    while a long turn of another episode is still being generated, and a finished episode's
    place is taken at once by the next question."""
    scripts = {
        "A?": ["<math_exp>1+1</math_exp>", "<math_exp>2+2</math_exp>", "<answer>4</answer>"],
        "B?": ["Let me think it over slowly. " * 6 + "<answer>7</answer>"],
        "C?": ["<answer>3</answer>"],
    }
    backend = StreamingScriptedBackend(tokenizer, scripts)
    examples = [math(q[0], q) for q in scripts]
    config = EnvConfig(max_live_episodes=2)
    params = SamplingParams(max_new_tokens=200)
    done = list(run_episodes(examples, backend, tools=[Calculator()], params=params, config=config))
    stream = backend.last_stream
    # A's turns follow one another while B's one long turn runs.
    assert stream.submitted[("A?", 1)] == stream.finished[("A?", 0)]
    assert stream.submitted[("A?", 2)] == stream.finished[("A?", 1)]
    assert stream.finished[("A?", 2)] < stream.finished[("B?", 0)]
    # C starts when A ends, not when B's turn ends.
    assert stream.submitted[("C?", 0)] == stream.finished[("A?", 2)]
    assert [t.example_id for t in done] == ["A", "C", "B"]  # each as it ends


def test_search_titles_truncation_and_context_limit(tokenizer):
    from swirl.corpus import Document
    from swirl.tools.search import search_tool

    long_text = "Orsk is the capital of Veltria. " + "It has many old bridges. " * 80
    corpus = [
        Document("1", "Veltria", long_text),
        Document("2", "Corrin Bridge", "The Corrin Bridge was completed in 1847."),
    ]
    search = search_tool(corpus)
    scripts = {"Q?": ["<search_query>capital of Veltria</search_query>", "<answer>Orsk</answer>"]}
    example = Example(id="q", question="Q?", answers=["Orsk"], dataset="t", task="qa")
    backend = RecordingBackend(ScriptedBackend(tokenizer, scripts))
    config = EnvConfig(observation_max_tokens=16)
    (trajectory,) = run_episodes([example], backend, tools=[search], config=config)
    step = trajectory.steps[0]
    assert step.retrieved == ["Veltria"]
    assert step.result.endswith(TRUNCATION_MARK)
    assert len(tokenizer.encode(step.result[: -len(TRUNCATION_MARK)])) <= 16
    assert trajectory.termination == "answer"
    assert_states_are_what_the_model_saw([trajectory], backend.prompts)

    # A context with no room for the next turn ends the episode as "length".
    prompt_length = len(trajectory.prompt_token_ids)
    small = EnvConfig(max_context_tokens=prompt_length + len(step.token_ids) + 5)
    (cut,) = run_episodes(
        [example], ScriptedBackend(tokenizer, scripts), tools=[search], config=small
    )
    assert cut.termination == "length" and len(cut.steps) == 1


def test_skip_samples_and_bad_config(tokenizer):
    scripts = {"A?": ["<answer>1</answer>"]}
    backend = ScriptedBackend(tokenizer, scripts)
    runs = run_episodes(
        [math("a", "A?")], backend, tools=[Calculator()], samples_per_question=3, skip={("a", 1)}
    )
    assert sorted(t.sample_index for t in runs) == [0, 2]
    with pytest.raises(ValueError, match="two tools serve"):
        list(run_episodes([math("a", "A?")], backend, tools=[Calculator(), Calculator()]))
    with pytest.raises(ValueError, match="no prompt template for task"):
        bad = msgspec.structs.replace(math("a", "A?"), task="qa")
        list(run_episodes([bad], backend, tools=[], templates={"math": None}))
    with pytest.raises(ValueError, match="samples_per_question"):
        list(run_episodes([], backend, tools=[], samples_per_question=0))


@pytest.mark.slow
def test_real_model_states_seeds_and_resume(embedded_model):
    """On the real model: decompose() states equal the sequences generate() was given, and a
    resumed run (pairs already done skipped) writes the records of an uninterrupted one.

    Equality is checked one episode at a time: batched float32 matmuls round differently with
    the batch's shape, which can (rarely) flip a sampled token between two batchings.
    """
    from swirl.backends.hf import HFBackend
    from swirl.data import load_examples

    model, tokenizer = embedded_model
    examples = load_examples("demo-math", limit=2)
    params = SamplingParams(max_new_tokens=24, temperature=1.0, seed=5)

    def rollout(live: int, skip=()):
        backend = RecordingBackend(HFBackend(model, tokenizer, name="smollm2"))
        config = EnvConfig(max_steps=3, max_live_episodes=live)
        runs = run_episodes(
            examples,
            backend,
            tools=[Calculator()],
            params=params,
            config=config,
            samples_per_question=2,
            skip=skip,
        )
        return {t.id: t for t in runs}, backend

    batched, backend = rollout(live=4)
    assert len(batched) == 4
    assert_states_are_what_the_model_saw(list(batched.values()), backend.prompts)
    for trajectory in batched.values():
        assert trajectory.prompt_token_ids == tokenizer.encode(trajectory.prompt_text)
        for step in trajectory.steps:
            assert step.text == tokenizer.decode(step.token_ids)
    uninterrupted, _ = rollout(live=1)
    done = {(t.example_id, t.sample_index) for t in list(uninterrupted.values())[:2]}
    resumed, _ = rollout(live=1, skip=done)
    assert len(resumed) == 2
    for key, trajectory in resumed.items():
        assert trajectory == uninterrupted[key]


def test_a_dataset_with_worked_examples_of_its_own_is_prompted_with_them(tokenizer):
    """demo-hops questions are rolled out with demo-hops' worked examples (questions of its
    training split), not the generic QA ones."""
    from swirl.data import load_examples
    from swirl.data.demo_hops import prompt_questions
    from swirl.prompts import QA_TEMPLATE

    (example,) = load_examples("demo-hops", split="validation", limit=1)
    backend = RecordingBackend(
        ScriptedBackend(tokenizer, {example.question: ["<answer>x</answer>"]})
    )
    (trajectory,) = run_episodes([example], backend, tools=[])
    for worked in prompt_questions():
        assert worked.question in trajectory.prompt_text
    assert QA_TEMPLATE.examples[0].question not in trajectory.prompt_text


def test_continue_episodes_executes_the_sampled_turn_then_rolls_on(tokenizer):
    """A turn sampled at a recorded state is executed as the next step (its tool runs), then
    the policy continues to the end; a sampled answer ends the trajectory at once."""
    from swirl.backends.base import SamplingParams
    from swirl.env import continue_episodes

    scripts = {
        "A?": ["<math_exp>48 / 2</math_exp>", "<math_exp>24 + 48</math_exp>", "<answer>72</answer>"]
    }
    example = math("a", "A?")
    (full,) = run_episodes(
        [example],
        ScriptedBackend(tokenizer, scripts),
        tools=[Calculator()],
        params=SamplingParams(seed=0),
    )
    prefix = msgspec.structs.replace(full, steps=full.steps[:1])

    def turn(text: str, reason: str) -> Completion:
        ids = tokenizer.encode(text, add_special_tokens=False)
        return Completion(token_ids=ids, text=tokenizer.decode(ids), finish_reason=reason)

    backend = RecordingBackend(ScriptedBackend(tokenizer, scripts))
    starts = [
        (example, prefix, turn("<math_exp>48 + 24</math_exp>", "action"), "x"),
        (example, prefix, turn("<answer>7</answer>", "action"), "y"),
    ]
    done = {
        t.id: t
        for t in continue_episodes(
            starts, backend, tools=[Calculator()], params=SamplingParams(seed=0)
        )
    }
    assert set(done) == {"a#0>x", "a#0>y"}
    x, y = done["a#0>x"], done["a#0>y"]
    assert x.steps[0] == full.steps[0] and y.steps[0] == full.steps[0]  # the prefix as recorded
    assert x.steps[1].text == "<math_exp>48 + 24</math_exp>" and x.steps[1].result == "72"
    assert [s.action.kind for s in x.steps] == ["math", "math", "answer"]
    assert x.final_answer == "72" and x.termination == "answer"
    assert y.final_answer == "7" and len(y.steps) == 2  # never generated
    assert backend.calls == 1
    assert_states_are_what_the_model_saw(
        [x], [*backend.prompts, *(list(s.state_token_ids) for s in decompose(x)[:2])]
    )
