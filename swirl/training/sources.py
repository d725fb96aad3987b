"""Where the actions of a training step come from.

- :class:`RecordedActions` (offline and SFT modes): the action recorded at each state, rewarded
  with its stored process label (offline) or 1 (SFT, plain likelihood).
- :class:`SampledActions` (online, the paper's mode): G fresh actions per state from the current
  policy, one turn each, stopped at the closing tag and never executed, scored by the judge
  (or, in ``stepwise-outcome`` mode, by the outcome of completing them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

import msgspec

from swirl.backends.base import Completion, GenerationBackend, SamplingParams, derive_seed
from swirl.training.states import State
from swirl.training.trees import ActionSample


class ActionSource(Protocol):
    def samples(
        self, states: Sequence[State], step: int, occurrences: Sequence[int]
    ) -> list[ActionSample]:
        """The actions to train on at ``states`` in optimizer step ``step``; ``occurrences[i]``
        counts the earlier draws of ``states[i]`` in this step (a state can be drawn twice)."""
        ...


class RecordedActions:
    """The recorded actions. ``reward="label"``: 1/0 from the process label (unknown: dropped);
    ``reward="one"``: every action weighs 1 (supervised fine-tuning)."""

    def __init__(self, reward: Literal["label", "one"]) -> None:
        self.reward = reward

    def samples(
        self, states: Sequence[State], step: int, occurrences: Sequence[int]
    ) -> list[ActionSample]:
        out = []
        for index, state in enumerate(states):
            if self.reward == "one":
                reward: float | None = 1.0
            else:
                verdict = None if state.process is None else state.process.verdict
                reward = None if verdict is None else float(verdict)
            out.append(ActionSample.single(state, list(state.action_token_ids), reward, index))
        return out


class ActionScorer(Protocol):
    def score(self, pairs: Sequence[tuple[State, Completion]], step: int) -> list[float | None]:
        """A reward per (state, sampled completion) of optimizer step ``step`` (None: unknown)."""
        ...


class SampledActions:
    """G samples per state from ``backend`` (the live policy), scored by ``scorer`` (the judge's
    step label, or the outcome of completing the step: see ``swirl.training.completions``).

    Seeds are derived from (seed, step, state, occurrence of the state in the step, sample), so a
    resumed run samples what the uninterrupted run would have, and a state drawn twice in one
    step gets independent samples.
    """

    def __init__(
        self,
        backend: GenerationBackend,
        scorer: ActionScorer,
        *,
        samples_per_state: int,
        params: SamplingParams,
        seed: int,
    ) -> None:
        self.backend = backend
        self.scorer = scorer
        self.samples_per_state = samples_per_state
        self.params = msgspec.structs.replace(params, stop_at_action=True)
        self.seed = seed

    def samples(
        self, states: Sequence[State], step: int, occurrences: Sequence[int]
    ) -> list[ActionSample]:
        prompts, params, owners = [], [], []
        for index, (state, occurrence) in enumerate(zip(states, occurrences, strict=True)):
            room = self.backend.context_length - state.offset
            if room < 1:
                continue  # the state fills the context: nothing can be sampled
            for sample in range(self.samples_per_state):
                key = (self.seed, step, state.trajectory_id, state.step_index, occurrence, sample)
                params.append(
                    msgspec.structs.replace(
                        self.params,
                        seed=derive_seed(*key),
                        max_new_tokens=min(self.params.max_new_tokens, room),
                    )
                )
                prompts.append(state.state_token_ids.tolist())
                owners.append(index)
        completions = self.backend.generate(prompts, params) if prompts else []
        rewards = self.scorer.score(
            [
                (states[owner], completion)
                for owner, completion in zip(owners, completions, strict=True)
            ],
            step,
        )
        return [
            ActionSample.single(
                states[owner], list(completion.token_ids), reward, owner, completion.logprobs
            )
            for owner, completion, reward in zip(owners, completions, rewards, strict=True)
        ]
