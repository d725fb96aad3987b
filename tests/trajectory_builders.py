"""Hand-built examples, trajectories and evaluation records for the judge, filter, evaluation,
study and training tests."""

from __future__ import annotations

from collections.abc import Sequence

from swirl.evaluate import EvalRecord
from swirl.schema import Example, Judgment, Step, SupportingFact, Trajectory
from swirl.tags import parse_action

QA_EXAMPLE = Example(
    id="qa-1",
    question="Which band did the drummer of the group that recorded 'Abbey Road' join first?",
    answers=["Rory Storm and the Hurricanes", "the Hurricanes"],
    dataset="hand",
    supporting_facts=[SupportingFact("Abbey Road"), SupportingFact("Ringo Starr", 2)],
)

MATH_EXAMPLE = Example(
    id="math-1",
    question="Natalia sold 48 clips in April and half as many in May. How many in total?",
    answers=["72"],
    dataset="hand",
    task="math",
    reference_steps=["48/2=24", "48+24=72"],
)


def step(
    text: str,
    result: str = "",
    retrieved: Sequence[str] = (),
    verdict: bool | str | None = "unset",
) -> Step:
    """A step whose action is parsed from ``text``; ``verdict`` sets a process label."""
    label = None if verdict == "unset" else Judgment(judge="test", verdict=verdict)
    return Step(
        text=text,
        token_ids=[len(text) % 7, 1, 2],
        action=parse_action(text),
        result=result,
        retrieved=list(retrieved),
        process=label,
    )


def trajectory(
    example: Example,
    steps: Sequence[Step],
    *,
    id: str = "t",
    outcome: bool | str | None = "unset",
) -> Trajectory:
    """A trajectory of ``example``; the final answer is the payload of an answer step."""
    answer = next((s.action.payload for s in steps if s.action.kind == "answer"), None)
    return Trajectory(
        id=id,
        example_id=example.id,
        task=example.task,
        prompt_text=f"Question: {example.question}\n",
        prompt_token_ids=[5, 6, 7],
        steps=list(steps),
        final_answer=answer,
        termination="answer" if answer is not None else "step_cap",
        outcome=None if outcome == "unset" else Judgment(judge="test", verdict=outcome),
    )


def record(**fields) -> EvalRecord:
    """An evaluation record of a correct one-search answer, with ``fields`` changed."""
    base = dict(
        example_id="e",
        trajectory_id="e#0",
        task="qa",
        question="?",
        answers=["a"],
        prediction="a",
        termination="answer",
        steps=2,
        tool_calls=1,
        judge="reference",
        judge_correct=True,
        exact_match=True,
        f1=1.0,
        precision=1.0,
        recall=1.0,
        cover_match=True,
        process_label=1.0,
    )
    return EvalRecord(**{**base, **fields})


def demo_math_trajectories(tokenizer, limit: int = 4) -> list[Trajectory]:
    """One recorded trajectory per demo-math training question, in the tokenizer's ids: a
    calculator step per annotated intermediate (process labels GOOD, BAD, GOOD, ...), then the
    gold answer."""
    from swirl.data import load_examples

    def ids(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    trajectories = []
    for example in load_examples("demo-math", split="train", limit=limit):
        prompt = f"<|im_start|>user\n{example.question}<|im_end|>\n<|im_start|>assistant\n"
        steps = []
        for k, annotation in enumerate(example.reference_steps):
            expression, value = annotation.split("=")
            text = f"Next. <math_exp>{expression}</math_exp>"
            observation = (
                f"<|im_end|>\n<|im_start|>user\n{expression} -> {value}<|im_end|>\n"
                "<|im_start|>assistant\n"
            )
            steps.append(
                Step(
                    text=text,
                    token_ids=ids(text),
                    action=parse_action(text),
                    result=value,
                    observation_text=observation,
                    observation_token_ids=ids(observation),
                    process=Judgment(judge="reference", verdict=k % 2 == 0),
                )
            )
        answer = f"<answer>{example.answers[0]}</answer>"
        steps.append(Step(text=answer, token_ids=ids(answer), action=parse_action(answer)))
        trajectories.append(
            Trajectory(
                id=f"{example.id}#0",
                example_id=example.id,
                task="math",
                prompt_text=prompt,
                prompt_token_ids=ids(prompt),
                steps=steps,
                final_answer=example.answers[0],
                termination="answer",
            )
        )
    return trajectories
