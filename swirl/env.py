"""The multi-step tool-use environment: many episodes advance together, each at its own pace.

Every live episode's next turn is submitted to the backend's completion stream
(:func:`swirl.backends.streaming.open_stream`; a turn stops at the first closing action tag or at
the end of the turn). As soon as a turn comes back it is parsed with :func:`swirl.parse_action`,
the tool runs, the observation is appended as a new user turn ``QUERY -> RESULT`` and the
episode's next turn is submitted at once: with a continuously batching backend (the local one)
it joins the batch at the next decode step, without waiting for the other episodes' turns. A
backend with only ``generate`` gets one call per round of turns. An episode ends at ``<answer>`` (termination ``"answer"``), at the step cap
(``"step_cap"``), at a turn without a valid action (``"invalid_action"``, the turn is recorded) or
when a turn runs out of tokens, its own budget or the context's (``"length"``).

Token-in/token-out: the context is ``prompt_token_ids`` followed, per step, by the sampled ids
and the observation ids, all concatenated as lists of ids; nothing is decoded and re-encoded, so
``swirl.decompose`` rebuilds exactly the sequences the model was given.
"""

from __future__ import annotations

import itertools
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import msgspec

from swirl.backends.base import Completion, GenerationBackend, SamplingParams, derive_seed
from swirl.backends.streaming import open_stream
from swirl.prompts import (
    TEMPLATES,
    ChatTurns,
    PromptTemplate,
    observation_content,
    render_chat,
    template_for,
)
from swirl.schema import Example, Step, Termination, Trajectory
from swirl.settings import RolloutSettings, ToolSettings
from swirl.tags import parse_action
from swirl.tools.base import Tool

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

TRUNCATION_MARK = " ..."
# Episodes in flight when neither the config nor the backend says (a remote server's batch).
DEFAULT_LIVE_EPISODES = 32


class EnvConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Knobs of the environment loop.

    ``max_steps``: actions per trajectory (None: the template's default, 5 for QA, 10 for math).
    ``few_shot``: worked examples in the prompt. ``observation_max_tokens``: a tool result longer
    than this many tokens is cut (and marked with ``" ..."``). ``max_context_tokens``: prompt plus
    all turns (None: the backend's context length). ``max_live_episodes``: episodes in flight
    together (None: the backend's ``max_batch_size`` if it has one, else
    :data:`DEFAULT_LIVE_EPISODES`).
    """

    max_steps: int | None = None
    few_shot: int = 2
    observation_max_tokens: int = 256
    max_context_tokens: int | None = None
    max_live_episodes: int | None = None

    @classmethod
    def from_settings(
        cls, rollout: RolloutSettings, tools: ToolSettings, *, max_live_episodes: int | None = None
    ) -> EnvConfig:
        """The loop's knobs from the recorded rollout and tool settings."""
        return cls(
            max_steps=rollout.max_steps,
            few_shot=rollout.few_shot,
            observation_max_tokens=tools.observation_tokens,
            max_live_episodes=max_live_episodes,
        )

    def __post_init__(self) -> None:
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.observation_max_tokens < 1:
            raise ValueError(
                f"observation_max_tokens must be >= 1, got {self.observation_max_tokens}"
            )
        if self.max_live_episodes is not None and self.max_live_episodes < 1:
            raise ValueError(f"max_live_episodes must be >= 1, got {self.max_live_episodes}")


def trajectory_id(example_id: str, sample_index: int) -> str:
    """The id of sample ``sample_index`` of an example (unique within a generation run)."""
    return f"{example_id}#{sample_index}"


@dataclass
class _Episode:
    example: Example
    sample_index: int
    max_steps: int
    prompt_text: str
    prompt_ids: list[int]
    context: list[int]
    steps: list[Step] = field(default_factory=list)
    exact_ids: bool = True
    # A continuation's name (see continue_episodes): part of its id and of its turns' seeds, so
    # the continuations of one recorded state are independent draws.
    branch: str = ""


class _Environment:
    """Shared, read-only parts of a run: backend, tools, templates, boundaries, config."""

    def __init__(
        self,
        backend: GenerationBackend,
        tools: Sequence[Tool],
        params: SamplingParams,
        config: EnvConfig,
        templates: Mapping[str, PromptTemplate],
    ) -> None:
        self.backend = backend
        self.tokenizer = backend.tokenizer
        self.tools: dict[str, Tool] = {}
        for tool in tools:
            if tool.kind in self.tools:
                raise ValueError(f"two tools serve the action kind {tool.kind!r}")
            self.tools[tool.kind] = tool
        self.params = msgspec.structs.replace(params, stop_at_action=True)
        self.config = config
        self.templates = templates
        self.turns = ChatTurns.from_tokenizer(self.tokenizer)
        self.context_limit = config.max_context_tokens or backend.context_length

    def start(self, example: Example, sample_index: int) -> _Episode:
        template = template_for(example, self.templates)
        if template is None:
            raise ValueError(
                f"example {example.id!r}: no prompt template for task {example.task!r}"
            )
        max_steps = self.config.max_steps or template.default_max_steps
        messages = template.messages(
            example.question, max_steps=max_steps, few_shot=self.config.few_shot
        )
        text = render_chat(self.tokenizer, messages)
        ids = list(self.tokenizer.encode(text, add_special_tokens=False))
        return _Episode(example, sample_index, max_steps, text, ids, list(ids))

    def resume(self, example: Example, prefix: Trajectory, branch: str) -> _Episode:
        """The episode of ``example`` as ``prefix`` left it: its prompt and steps as recorded,
        its context their token ids, ready for its next turn."""
        template = template_for(example, self.templates)
        if template is None:
            raise ValueError(
                f"example {example.id!r}: no prompt template for task {example.task!r}"
            )
        context = list(prefix.prompt_token_ids)
        for step in prefix.steps:
            context += step.token_ids + step.observation_token_ids
        return _Episode(
            example,
            prefix.sample_index,
            self.config.max_steps or template.default_max_steps,
            prefix.prompt_text,
            list(prefix.prompt_token_ids),
            context,
            [msgspec.structs.replace(step) for step in prefix.steps],
            branch=branch,
        )

    def turn_params(self, episode: _Episode) -> SamplingParams | None:
        """Sampling params of the episode's next turn; None when no token fits the context."""
        room = self.context_limit - len(episode.context)
        if room < 1:
            return None
        seed = self.params.seed
        if seed is not None:
            # Per (example, sample, step): a resumed or re-batched run samples the same turn.
            key = (seed, episode.example.id, episode.sample_index, len(episode.steps))
            seed = derive_seed(*key, episode.branch) if episode.branch else derive_seed(*key)
        return msgspec.structs.replace(
            self.params, seed=seed, max_new_tokens=min(self.params.max_new_tokens, room)
        )

    def advance(self, episode: _Episode, completion: Completion) -> Termination | None:
        """Record one sampled turn; return the termination if the episode ended."""
        episode.exact_ids &= completion.exact_token_ids
        action = parse_action(completion.text)
        step = Step(
            text=completion.text,
            token_ids=list(completion.token_ids),
            action=action,
            logprobs=completion.logprobs,
        )
        episode.steps.append(step)
        episode.context += completion.token_ids
        if action.kind == "answer":
            return "answer"
        if action.kind in ("none", "invalid"):
            return "length" if completion.finish_reason == "length" else "invalid_action"
        tool = self.tools.get(action.kind)
        if tool is None:
            step.action = msgspec.structs.replace(
                action, kind="invalid", payload="", error=f"no {action.kind} tool in this task"
            )
            return "invalid_action"
        step.result, step.retrieved = run_tool(
            tool, action.payload, self.tokenizer, self.config.observation_max_tokens
        )
        if len(episode.steps) >= episode.max_steps:
            return "step_cap"  # the model never sees this result: no observation is appended
        observation = self.turns.observation_ids(
            self.tokenizer,
            observation_content(action.payload, step.result),
            turn_ids=completion.token_ids,
        )
        step.observation_token_ids = observation
        step.observation_text = self.tokenizer.decode(observation, skip_special_tokens=False)
        episode.context += observation
        return None

    def finish(self, episode: _Episode, termination: Termination) -> Trajectory:
        last = episode.steps[-1] if episode.steps else None
        answer = last.action.payload if last and last.action.kind == "answer" else None
        metadata: dict[str, str | int | float | bool] = {
            "temperature": self.params.temperature,
            "top_p": self.params.top_p,
            "max_new_tokens": self.params.max_new_tokens,
        }
        if self.params.seed is not None:
            metadata["seed"] = self.params.seed
        if not episode.exact_ids:
            metadata["exact_token_ids"] = False
        name = trajectory_id(episode.example.id, episode.sample_index)
        return Trajectory(
            id=f"{name}>{episode.branch}" if episode.branch else name,
            example_id=episode.example.id,
            sample_index=episode.sample_index,
            task=episode.example.task,
            model=self.backend.name,
            prompt_text=episode.prompt_text,
            prompt_token_ids=episode.prompt_ids,
            steps=episode.steps,
            final_answer=answer,
            termination=termination,
            metadata=metadata,
        )


def run_tool(
    tool: Tool, payload: str, tokenizer: PreTrainedTokenizerBase, max_tokens: int
) -> tuple[str, list[str]]:
    """Run one action's payload: the tool's result cut to ``max_tokens`` tokens (marked with
    ``" ..."``), and the titles of the documents a search returned.

    A search tool that offers ``search(query) -> documents`` and ``format(documents) -> str``
    (``swirl.tools.search.Search``, ``RemoteSearch``) reports its documents' titles; any other
    tool is just called.
    """
    search, format_ = getattr(tool, "search", None), getattr(tool, "format", None)
    if callable(search) and callable(format_):
        documents = search(payload)
        text, titles = format_(documents), [document.title for document in documents]
    else:
        text, titles = tool(payload), []
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) <= max_tokens:
        return text, titles
    cut = tokenizer.decode(ids[:max_tokens], skip_special_tokens=True)
    return cut.rstrip("\ufffd").rstrip() + TRUNCATION_MARK, titles


def run_episodes(
    examples: Iterable[Example],
    backend: GenerationBackend,
    *,
    tools: Sequence[Tool],
    params: SamplingParams | None = None,
    config: EnvConfig | None = None,
    templates: Mapping[str, PromptTemplate] | None = None,
    samples_per_question: int = 1,
    skip: Container[tuple[str, int]] = (),
) -> Iterator[Trajectory]:
    """Roll out ``samples_per_question`` trajectories per example; yield each as it finishes.

    ``tools`` serve the action kinds (one per kind). ``params.seed`` (when set) seeds every turn
    by (seed, example id, sample index, step), so a turn's random draws do not depend on batching
    or on resuming (its logits can, in the last float bits, with the batch's shape). ``templates`` maps a task to its prompt (default: :data:`swirl.prompts.TEMPLATES`, where a
    dataset with worked examples of its own, such as demo-hops, uses them).
    ``skip`` holds (example id, sample index) pairs already done, which are not run again.
    Examples are read lazily; at most ``config.max_live_episodes`` episodes are in flight, and
    each yields as soon as it ends (not in example order).
    """
    if samples_per_question < 1:
        raise ValueError(f"samples_per_question must be >= 1, got {samples_per_question}")
    env = _Environment(
        backend, tools, params or SamplingParams(), config or EnvConfig(), templates or TEMPLATES
    )
    pending = (
        env.start(example, index)
        for example in examples
        for index in range(samples_per_question)
        if (example.id, index) not in skip
    )
    yield from _drive(env, pending)


def continue_episodes(
    starts: Iterable[tuple[Example, Trajectory, Completion, str]],
    backend: GenerationBackend,
    *,
    tools: Sequence[Tool],
    params: SamplingParams | None = None,
    config: EnvConfig | None = None,
    templates: Mapping[str, PromptTemplate] | None = None,
) -> Iterator[Trajectory]:
    """Continue recorded trajectories from a sampled turn to their end; yield each as it ends.

    Each start is ``(example, prefix, completion, branch)``: ``prefix`` is a trajectory cut
    before some step (its steps are kept as recorded), ``completion`` a turn sampled at that
    state, which is executed as the next step (its tool runs), and the ``backend`` (the current
    policy) then rolls on to an answer or the step cap. ``branch`` names the continuation: the
    result's id is ``PREFIX_ID>BRANCH`` and its later turns are seeded by (seed, example,
    sample, step, branch), so continuations of one state are independent and reproducible.
    """
    env = _Environment(
        backend, tools, params or SamplingParams(), config or EnvConfig(), templates or TEMPLATES
    )

    def resumed() -> Iterator[_Episode | Trajectory]:
        for example, prefix, completion, branch in starts:
            episode = env.resume(example, prefix, branch)
            termination = env.advance(episode, completion)
            yield episode if termination is None else env.finish(episode, termination)

    yield from _drive(env, resumed())


def _drive(env: _Environment, pending: Iterator[_Episode | Trajectory]) -> Iterator[Trajectory]:
    """Run ``pending`` episodes to their end through the backend's completion stream, at most
    ``max_live_episodes`` in flight (None: the backend's ``max_batch_size``); an episode's next
    turn is submitted as soon as its last one comes back. A pending item that is already a
    trajectory (an episode that ended before its first turn here) is yielded as it comes."""
    limit = env.config.max_live_episodes or getattr(
        env.backend, "max_batch_size", DEFAULT_LIVE_EPISODES
    )
    stream = open_stream(env.backend)
    in_flight: dict[int, _Episode] = {}
    keys = itertools.count()

    def submit(episode: _Episode) -> Iterator[Trajectory]:
        """Submit the episode's next turn, or end it when no token fits its context."""
        turn = env.turn_params(episode)
        if turn is None:
            yield env.finish(episode, "length")
            return
        key = next(keys)
        in_flight[key] = episode
        stream.submit(episode.context, turn, key)

    def fill() -> Iterator[Trajectory]:
        """Start episodes until ``limit`` are in flight or none is left."""
        while len(in_flight) < limit:
            nxt = next(pending, None)
            if nxt is None:
                return
            if isinstance(nxt, Trajectory):
                yield nxt
            else:
                yield from submit(nxt)

    yield from fill()
    for key, completion in stream:
        episode = in_flight.pop(key)  # type: ignore[call-overload]
        termination = env.advance(episode, completion)
        if termination is None:
            yield from submit(episode)
        else:
            yield env.finish(episode, termination)
        yield from fill()
