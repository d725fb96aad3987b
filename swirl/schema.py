"""The data model of swirl: every file between two pipeline stages is JSONL of these Structs.

Token ids are the exact ids the model consumed or sampled; texts are kept beside them for people
and judges, never re-tokenised. The context the model saw before action ``i`` is::

    prompt_token_ids + sum(step.token_ids + step.observation_token_ids for step in steps[:i])
"""

from __future__ import annotations

from typing import Literal

import msgspec

ActionKind = Literal["search", "math", "answer", "none", "invalid"]
Termination = Literal["answer", "step_cap", "invalid_action", "length"]
TaskKind = Literal["qa", "math"]


class SupportingFact(msgspec.Struct, frozen=True):
    """A gold evidence pointer (HotPotQA style): article title and sentence index in it, and the id
    of that article in the dataset's search corpus.

    ``document`` tells apart evidence that shares a title: a corpus holding different texts under
    one title (MuSiQue, BeerQA paragraphs) names the k-th ``"title#k"``. None when the example
    comes without a corpus, or its context lacks the article.
    """

    title: str
    sentence: int = 0
    document: str | None = None


class Example(msgspec.Struct, kw_only=True):
    """One question of a dataset with its gold annotations."""

    id: str
    question: str
    answers: list[str]
    dataset: str
    task: TaskKind = "qa"
    supporting_facts: list[SupportingFact] = []
    # Annotated intermediate calculations, e.g. ["48/2=24", "48+24=72"] (GSM8K <<...>> marks).
    reference_steps: list[str] = []
    metadata: dict[str, str | int | float | bool] = {}


class Action(msgspec.Struct, frozen=True):
    """The parsed action of one model turn (see ``swirl.parse_action``).

    ``start``/``end`` are code-point offsets of the whole tag element in the turn text (``end`` just
    past the closing tag); both are -1 when the turn holds no tag (``kind == "none"``).
    """

    kind: ActionKind
    payload: str
    thought: str
    start: int
    end: int
    error: str | None = None


class Judgment(msgspec.Struct, kw_only=True):
    """A label from a judge: ``verdict`` is None when the judge's output could not be parsed.
    ``rule`` names the rule that decided it (rule-based judges, e.g. ``"answer: supported"``);
    None for a model's judgment, whose reasons are in ``explanation``."""

    judge: str
    verdict: bool | None
    explanation: str = ""
    rule: str | None = None


class Step(msgspec.Struct, kw_only=True):
    """One action of a trajectory and what the environment appended after it.

    ``token_ids`` are the sampled tokens of the turn (``text`` is their decoding);
    ``observation_token_ids`` are everything appended before the next action: the end of the
    assistant turn, the user turn with ``result`` (``QUERY -> RESULT``) and the next assistant
    header. ``observation_text`` is their text.
    """

    text: str
    token_ids: list[int]
    action: Action
    result: str = ""
    # Titles of the documents a search step returned (empty for other tools); the reference
    # judge compares them with the gold supporting facts.
    retrieved: list[str] = []
    observation_text: str = ""
    observation_token_ids: list[int] = []
    process: Judgment | None = None
    # The sampler's log-prob of each of ``token_ids`` (natural log, under the distribution it
    # drew from); None when the backend gave none. Trainers compare it with the learner's.
    logprobs: list[float] | None = None


class Trajectory(msgspec.Struct, kw_only=True):
    """A multi-step rollout of one example (one of several samples per question)."""

    id: str
    example_id: str
    sample_index: int = 0
    task: TaskKind = "qa"
    model: str = ""
    prompt_text: str
    prompt_token_ids: list[int]
    steps: list[Step] = []
    final_answer: str | None = None
    termination: Termination
    outcome: Judgment | None = None
    metadata: dict[str, str | int | float | bool] = {}


class SubTrajectory(msgspec.Struct, kw_only=True):
    """State ``s_i`` (everything before action i) and action ``a_i``: one Stage-2 training state."""

    trajectory_id: str
    example_id: str
    step_index: int
    state_token_ids: list[int]
    action_token_ids: list[int]
    state_text: str
    action_text: str
    action: Action
    process: Judgment | None = None
