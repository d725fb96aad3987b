"""Whole-trajectory RL's actions: one reward for a whole sampled trajectory.

With ``reward="outcome"`` this is the baseline the SWiRL paper calls single-step RL, and what
multi-turn agent trainers such as SkyRL and Agent Lightning do: for each question, G complete
multi-step rollouts by the current policy, executing the tools; each is judged only on its final
answer (YES 1, NO 0), the advantage is computed against the question's G rollouts, and every
token the model wrote in the trajectory (each action, never the prompt or a tool's observation)
is trained with that one advantage. The G rollouts of a question share its prompt, so they share
it in the packed tree.

With ``reward="process"`` (training mode ``trajectory-process``) the same rollouts are rewarded
by their mean process label (the fraction of their steps the judge calls GOOD; an undecided
label counts as not GOOD): the judge's step labels without SWiRL's decomposition into states,
one half of the 2 x 2 that separates the decomposition from the reward.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import msgspec

from swirl.backends.base import GenerationBackend, SamplingParams, derive_seed
from swirl.env import EnvConfig, run_episodes
from swirl.judge.base import Judge
from swirl.schema import Example, Trajectory
from swirl.tools.base import Tool
from swirl.training.states import trajectory_states
from swirl.training.trees import ActionSample


class OutcomeRollouts:
    """G rollouts per question from ``backend`` (the live policy), rewarded by ``judge``'s
    outcome label.

    Turns are seeded by (seed, step, occurrence of the question in the step, sample, turn), so a
    resumed run samples what the uninterrupted one would have, and a question drawn twice in a
    step gets independent rollouts.
    """

    def __init__(
        self,
        backend: GenerationBackend,
        judge: Judge,
        *,
        reward: Literal["outcome", "process"] = "outcome",
        tools: Sequence[Tool],
        env: EnvConfig,
        samples_per_question: int,
        params: SamplingParams,
        seed: int,
    ) -> None:
        self.backend = backend
        self.judge = judge
        self.reward = reward
        self.tools = tools
        self.env = env
        self.samples_per_question = samples_per_question
        self.params = params
        self.seed = seed

    def rollouts(
        self, questions: Sequence[Example], step: int, occurrences: Sequence[int]
    ) -> list[tuple[int, Trajectory]]:
        """(index of the question in ``questions``, trajectory) for every rollout of the step;
        trajectory ids name the step and occurrence, so they are unique within it."""
        out: list[tuple[int, Trajectory]] = []
        for occurrence in sorted(set(occurrences)):
            chosen = [i for i, o in enumerate(occurrences) if o == occurrence]
            index_of = {questions[i].id: i for i in chosen}
            params = msgspec.structs.replace(
                self.params, seed=derive_seed(self.seed, step, occurrence)
            )
            for trajectory in run_episodes(
                [questions[i] for i in chosen],
                self.backend,
                tools=self.tools,
                params=params,
                config=self.env,
                samples_per_question=self.samples_per_question,
            ):
                unique = f"{trajectory.id}@{step}.{occurrence}"
                out.append(
                    (
                        index_of[trajectory.example_id],
                        msgspec.structs.replace(trajectory, id=unique),
                    )
                )
        return out

    def samples(
        self, questions: Sequence[Example], step: int, occurrences: Sequence[int]
    ) -> list[ActionSample]:
        """One sample per rollout: all its actions, its reward (None: undecided), and the
        question it answers as its baseline group."""
        rollouts = self.rollouts(questions, step, occurrences)
        labelled = self.judge.judge(
            [(questions[index], trajectory) for index, trajectory in rollouts], self.reward
        )
        out = []
        for (index, _), trajectory in zip(rollouts, labelled, strict=True):
            actions = tuple(
                (state, list(state.action_token_ids)) for state in trajectory_states(trajectory)
            )
            logprobs = tuple(step.logprobs for step in trajectory.steps)
            out.append(ActionSample(actions, self._reward(trajectory), index, logprobs))
        return out

    def _reward(self, trajectory: Trajectory) -> float | None:
        if self.reward == "outcome":
            verdict = None if trajectory.outcome is None else trajectory.outcome.verdict
            return None if verdict is None else float(verdict)
        if not trajectory.steps:
            return None
        good = sum(s.process is not None and s.process.verdict is True for s in trajectory.steps)
        return good / len(trajectory.steps)
