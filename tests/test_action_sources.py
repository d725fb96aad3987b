"""Online actions: which sampled actions reach the judge, and how samples are seeded."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import pytest

from swirl.backends.base import Completion, SamplingParams
from swirl.data import load_examples
from swirl.model import load_tokenizer
from swirl.schema import Judgment, Step, Trajectory
from swirl.tags import parse_action
from swirl.tools.calculator import Calculator
from swirl.training.rewards import StepScorer
from swirl.training.sources import SampledActions
from swirl.training.states import trajectory_states


class CountingJudge:
    """A stand-in LLM judge that calls every step it is shown GOOD and records what it saw."""

    name = "counting"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def judge(self, batch, mode):
        out = []
        for _, trajectory in batch:
            steps = list(trajectory.steps)
            self.seen.append(steps[-1].text)
            steps[-1] = msgspec.structs.replace(
                steps[-1], process=Judgment(judge=self.name, verdict=True)
            )
            out.append(msgspec.structs.replace(trajectory, steps=steps))
        return out


@pytest.fixture(scope="module")
def math_state():
    tokenizer = load_tokenizer()
    example = load_examples("demo-math", split="train", limit=1)[0]
    prompt = tokenizer.encode(f"Question: {example.question}\n", add_special_tokens=False)
    text = "<math_exp>1 + 1</math_exp>"
    step = Step(
        text=text,
        token_ids=tokenizer.encode(text, add_special_tokens=False),
        action=parse_action(text),
    )
    trajectory = Trajectory(
        id=f"{example.id}#0",
        example_id=example.id,
        task="math",
        prompt_text="",
        prompt_token_ids=prompt,
        steps=[step],
        termination="answer",
    )
    return tokenizer, example, trajectory_states(trajectory)[0]


def completion(tokenizer, text: str, finish: str) -> Completion:
    ids = tokenizer.encode(text, add_special_tokens=False)
    return Completion(token_ids=ids, text=text, finish_reason=finish)  # type: ignore[arg-type]


def test_invalid_truncated_and_tool_less_samples_get_zero_without_a_judge_call(math_state):
    tokenizer, example, state = math_state
    judge = CountingJudge()
    scorer = StepScorer(
        judge,
        examples={example.id: example},
        tools=[Calculator()],
        tokenizer=tokenizer,
    )
    samples = {
        "valid math": ("Add them. <math_exp>2 + 3</math_exp>", "action"),
        "valid answer": ("<answer>5</answer>", "action"),
        "no tag": ("I think the answer is five.", "eos"),
        "broken tag": ("<math_exp>2 + 3</answer>", "eos"),
        "cut off": ("Let me think about <math_exp>2 +", "length"),
        "no search tool in math": ("<search_query>apples</search_query>", "action"),
    }
    rewards = scorer.score([(state, completion(tokenizer, *v)) for v in samples.values()])
    assert dict(zip(samples, rewards, strict=True)) == {
        "valid math": 1.0,
        "valid answer": 1.0,
        "no tag": 0.0,
        "broken tag": 0.0,
        "cut off": 0.0,
        "no search tool in math": 0.0,
    }
    assert judge.seen == [samples["valid math"][0], samples["valid answer"][0]]
    assert scorer.score([(state, completion(tokenizer, "nothing", "eos"))]) == [0.0]
    assert len(judge.seen) == 2  # an all-invalid batch makes no judge call


class RecordingBackend:
    """A stand-in generator that returns one fixed answer and records the seeds it was given."""

    name = "recording"
    context_length = 4096

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.seeds: list[int | None] = []

    def generate(self, prompts: Sequence[Sequence[int]], params) -> list[Completion]:
        self.seeds += [p.seed for p in params]
        return [completion(self.tokenizer, "<answer>5</answer>", "action") for _ in prompts]


def test_a_state_drawn_twice_in_a_step_gets_independent_seeds(math_state):
    tokenizer, example, state = math_state
    scorer = StepScorer(
        CountingJudge(),
        examples={example.id: example},
        tools=[Calculator()],
        tokenizer=tokenizer,
    )
    backend = RecordingBackend(tokenizer)
    source = SampledActions(
        backend, scorer, samples_per_state=2, params=SamplingParams(seed=0), seed=0
    )
    samples = source.samples([state, state], step=3, occurrences=[0, 1])
    assert len(set(backend.seeds)) == 4  # 2 draws x 2 samples, all distinct
    assert [s.group for s in samples] == [0, 0, 1, 1]  # each draw is its own baseline group
    again = RecordingBackend(tokenizer)
    SampledActions(
        again, scorer, samples_per_state=2, params=SamplingParams(seed=0), seed=0
    ).samples([state, state], step=3, occurrences=[0, 1])
    assert again.seeds == backend.seeds  # and still reproducible
