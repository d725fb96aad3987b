"""Step rewards for actions sampled at training time (online mode).

A sampled action is never executed in the trajectory, but the judge must see what it would do:
a search query is run to learn which documents it would retrieve, a calculator expression is
evaluated. The candidate step is put after the recorded steps before its state, and the judge
labels that last step; GOOD is reward 1, BAD 0, an unknown verdict drops the sample.

An action the environment would not execute gets reward 0 without asking the judge (an LLM judge
could call it GOOD): one without a valid action tag, one cut off by the token budget, or one that
calls a tool the task does not have.
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence

import msgspec

from swirl.backends.base import Completion
from swirl.env import run_tool
from swirl.judge.base import Judge
from swirl.schema import Example, Step, Trajectory
from swirl.tags import parse_action
from swirl.tools.base import Tool
from swirl.training.states import State


def invalid_action_reason(completion: Completion, tool_kinds: Container[str]) -> str | None:
    """Why the environment would refuse to execute a sampled turn (it gets reward 0 without a
    judge), or None when it is a valid action: cut off by the token budget, no valid action tag,
    or a tool kind not in ``tool_kinds``."""
    if completion.finish_reason == "length":
        return "cut off by the token budget"
    action = parse_action(completion.text)
    if action.kind in ("none", "invalid"):
        return "no valid action tag"
    if action.kind != "answer" and action.kind not in tool_kinds:
        return f"no {action.kind} tool in this task"
    return None


class StepScorer:
    """Scores (state, sampled completion) pairs with a judge's process label of the new step."""

    def __init__(
        self,
        judge: Judge,
        *,
        examples: Mapping[str, Example],
        tools: Sequence[Tool],
        tokenizer: object,
        observation_max_tokens: int = 256,
    ) -> None:
        self.judge = judge
        self.examples = examples
        self.tools = {tool.kind: tool for tool in tools}
        self.tokenizer = tokenizer
        self.observation_max_tokens = observation_max_tokens

    def candidate_step(self, completion: Completion) -> Step:
        """The step the completion would make (its tool result, not appended to any context)."""
        action = parse_action(completion.text)
        step = Step(text=completion.text, token_ids=list(completion.token_ids), action=action)
        tool = self.tools.get(action.kind)
        if tool is not None:
            step.result, step.retrieved = run_tool(
                tool, action.payload, self.tokenizer, self.observation_max_tokens
            )
        return step

    def invalid_reason(self, completion: Completion) -> str | None:
        """Why the environment would refuse to execute this action, or None when it is valid."""
        return invalid_action_reason(completion, self.tools)

    def score(self, pairs: Sequence[tuple[State, Completion]], step: int = 0) -> list[float | None]:
        """Reward per pair: 1.0 (GOOD), 0.0 (BAD or invalid) or None (the judge could not
        decide). Only valid actions are sent to the judge; the optimizer ``step`` does not
        matter to a step label."""
        rewards: list[float | None] = [0.0] * len(pairs)
        asked: list[int] = []
        batch: list[tuple[Example, Trajectory]] = []
        for index, (state, completion) in enumerate(pairs):
            example = self.examples.get(state.example_id)
            if example is None:
                raise ValueError(
                    f"state {state.trajectory_id} step {state.step_index}: its example is not "
                    "loaded (pass the --data the trajectories were generated from)"
                )
            if self.invalid_reason(completion) is not None:
                continue
            trajectory = state.trajectory
            steps = [*trajectory.steps[: state.step_index], self.candidate_step(completion)]
            batch.append((example, msgspec.structs.replace(trajectory, steps=steps)))
            asked.append(index)
        labelled = self.judge.judge(batch, "process") if batch else []
        for index, trajectory in zip(asked, labelled, strict=True):
            label = trajectory.steps[-1].process
            verdict = None if label is None else label.verdict
            rewards[index] = None if verdict is None else float(verdict)
        return rewards
