"""Outcome rewards for single sampled steps (training mode ``stepwise-outcome``).

The 2 x 2 that separates SWiRL's decomposition from its reward needs step-wise sampling with an
outcome reward: each action sampled at a recorded state is executed, the current policy
continues the trajectory from there to an answer or the step cap
(:func:`swirl.env.continue_episodes`), and the judge's outcome label of that completed
trajectory (YES 1, NO 0) is the action's reward. Only the sampled action is trained (it is the
branch the trainer packs); the continuation only scores it. An action the environment would not
execute gets reward 0 without a continuation, as in SWiRL's scorer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

from swirl.backends.base import Completion, GenerationBackend, SamplingParams
from swirl.env import EnvConfig, continue_episodes
from swirl.judge.base import Judge
from swirl.schema import Example
from swirl.tools.base import Tool
from swirl.training.rewards import invalid_action_reason
from swirl.training.states import State


class CompletedOutcomeScorer:
    """Scores (state, sampled completion) pairs by the outcome of completing them."""

    def __init__(
        self,
        judge: Judge,
        backend: GenerationBackend,
        *,
        examples: Mapping[str, Example],
        tools: Sequence[Tool],
        params: SamplingParams,
        env: EnvConfig,
        seed: int,
    ) -> None:
        self.judge = judge
        self.backend = backend
        self.examples = examples
        self.tools = tools
        self.params = params
        self.env = env
        self.seed = seed
        self.tool_kinds = {tool.kind for tool in tools}

    def invalid_reason(self, completion: Completion) -> str | None:
        """SWiRL's rule: an action the environment would not execute is not completed."""
        return invalid_action_reason(completion, self.tool_kinds)

    def score(self, pairs: Sequence[tuple[State, Completion]], step: int) -> list[float | None]:
        """Reward per pair: the completed trajectory's outcome, 1.0 or 0.0 (0.0 for an action
        the environment would not execute), or None when the judge could not decide."""
        rewards: list[float | None] = [0.0] * len(pairs)
        starts = []
        for index, (state, completion) in enumerate(pairs):
            example = self.examples.get(state.example_id)
            if example is None:
                raise ValueError(
                    f"state {state.trajectory_id} step {state.step_index}: its example is not "
                    "loaded (pass the --data the trajectories were generated from)"
                )
            if self.invalid_reason(completion) is not None:
                continue
            prefix = msgspec.structs.replace(
                state.trajectory, steps=state.trajectory.steps[: state.step_index]
            )
            starts.append((example, prefix, completion, f"{step}.{index}"))
        if not starts:
            return rewards
        params = msgspec.structs.replace(self.params, seed=self.seed)
        finished = list(
            continue_episodes(
                starts, self.backend, tools=self.tools, params=params, config=self.env
            )
        )
        labelled = self.judge.judge([(self.examples[t.example_id], t) for t in finished], "outcome")
        by_branch = {t.id.rpartition(">")[2]: t for t in labelled}
        for _, _, _, branch in starts:
            index = int(branch.rpartition(".")[2])
            outcome = by_branch[branch].outcome
            verdict = None if outcome is None else outcome.verdict
            rewards[index] = None if verdict is None else float(verdict)
        return rewards
