"""Prompt templates of the environment and the token-level chat-turn boundaries.

The instructions say what the paper's prompts say (in our words): which tags exist, that a tool
result comes back as a new user turn ``QUERY -> RESULT``, the step cap, not to repeat a query, and
to either act or answer in a turn, never both. Small models follow the tags only after seeing
them used, so each template carries worked examples, rendered as earlier chat turns
(``few_shot`` of them go into the prompt). Their tool calls are bare tags: the 135M default model
copies that pattern, while examples that reason first lead it to reason at length and never act.

A dataset may bring its own worked examples, built from questions of its training split
(:func:`worked_example`, :data:`DATASET_PROMPT_QUESTIONS`): the 135M model copies the form of
the examples' answers, so examples unlike the dataset's questions teach it the wrong answer.
:func:`template_for` picks a question's template: its dataset's own, else its task's.

Turn boundaries (end of the assistant turn, the user turn holding the observation, the next
assistant header) are derived from the tokenizer's own chat template and appended as token ids,
so the context the model sees is built by concatenation and never re-tokenised.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import msgspec

from swirl.corpus import Document, format_documents
from swirl.schema import Example, TaskKind

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Message = Mapping[str, str]


class WorkedExample(msgspec.Struct, frozen=True):
    """A solved question: the assistant turns and, after each tool call, the observation text."""

    question: str
    turns: list[tuple[str, str | None]]


class PromptTemplate(msgspec.Struct, frozen=True, kw_only=True):
    """Instructions (``{max_steps}`` is filled in), the question wrapper and worked examples."""

    task: TaskKind
    instructions: str
    question: str = "Question: {question}"
    examples: list[WorkedExample] = []
    default_max_steps: int = 5

    def messages(self, question: str, *, max_steps: int, few_shot: int = 2) -> list[dict[str, str]]:
        """The chat messages of the first state ``s1``: instructions, examples, the question."""
        if few_shot < 0 or few_shot > len(self.examples):
            raise ValueError(f"few_shot must be in 0..{len(self.examples)}, got {few_shot}")
        system = self.instructions.format(max_steps=max_steps)
        out: list[dict[str, str]] = [{"role": "system", "content": system}]
        for example in self.examples[:few_shot]:
            out.append({"role": "user", "content": self.question.format(question=example.question)})
            for turn, observation in example.turns:
                out.append({"role": "assistant", "content": turn})
                if observation is not None:
                    out.append({"role": "user", "content": observation})
        out.append({"role": "user", "content": self.question.format(question=question)})
        return out


# Terse on purpose: the 135M default model follows short instructions better than long ones.
QA_INSTRUCTIONS = """\
Answer the question with a search engine. Each turn, write one search as \
<search_query>QUERY</search_query>; the best matching article comes back as QUERY -> RESULT. \
When the results answer the question, write <answer>ANSWER</answer> with a short answer. Search \
or answer, never both in one turn. Do not repeat a query. Answer only from the results. At most \
{max_steps} turns."""

MATH_INSTRUCTIONS = """\
Solve the problem with a calculator. Each turn, write one calculation as \
<math_exp>EXPRESSION</math_exp> (numbers, + - * / ^ %, parentheses); the value comes back as \
EXPRESSION -> RESULT. When you know the result, write <answer>NUMBER</answer>. Calculate or \
answer, never both in one turn. Do not repeat a calculation. At most {max_steps} turns."""

QA_EXAMPLES = [
    WorkedExample(
        question="In which country was the architect of the Halvorsen Library born?",
        turns=[
            (
                "<search_query>Halvorsen Library architect</search_query>",
                "Halvorsen Library architect -> Halvorsen Library: The Halvorsen Library is a public"
                " library in Tromsdal. It was designed by the architect Ines Marquet and opened in"
                " 1962.",
            ),
            (
                "<search_query>Ines Marquet</search_query>",
                "Ines Marquet -> Ines Marquet: Ines Marquet (1921-1990) was an architect born in"
                " Lyon, France. She worked mostly in Norway.",
            ),
            ("Ines Marquet was born in Lyon, France. <answer>France</answer>", None),
        ],
    ),
    WorkedExample(
        question="Which is older, the Corrin Bridge or the Aldwick Tower?",
        turns=[
            (
                "<search_query>Corrin Bridge</search_query>",
                "Corrin Bridge -> Corrin Bridge: The Corrin Bridge is a stone arch bridge completed"
                " in 1847.",
            ),
            (
                "<search_query>Aldwick Tower</search_query>",
                "Aldwick Tower -> Aldwick Tower: The Aldwick Tower is a clock tower built in 1902.",
            ),
            ("1847 is earlier than 1902. <answer>Corrin Bridge</answer>", None),
        ],
    ),
]

MATH_EXAMPLES = [
    WorkedExample(
        question="A baker makes 48 rolls. She sells half of them in the morning and 9 more in the"
        " afternoon. How many rolls are left?",
        turns=[
            (
                "<math_exp>48 / 2</math_exp>",
                "48 / 2 -> 24",
            ),
            (
                "<math_exp>24 - 9</math_exp>",
                "24 - 9 -> 15",
            ),
            ("15 rolls are left. <answer>15</answer>", None),
        ],
    ),
    WorkedExample(
        question="Tom buys 3 books at $12 each and a pen for $4. He pays with a $50 bill. How much"
        " change does he get?",
        turns=[
            ("<math_exp>3 * 12</math_exp>", "3 * 12 -> 36"),
            ("<math_exp>36 + 4</math_exp>", "36 + 4 -> 40"),
            ("<math_exp>50 - 40</math_exp>", "50 - 40 -> 10"),
            ("He gets $10 back. <answer>10</answer>", None),
        ],
    ),
]

QA_TEMPLATE = PromptTemplate(
    task="qa", instructions=QA_INSTRUCTIONS, examples=QA_EXAMPLES, default_max_steps=5
)
MATH_TEMPLATE = PromptTemplate(
    task="math", instructions=MATH_INSTRUCTIONS, examples=MATH_EXAMPLES, default_max_steps=10
)
TEMPLATES: dict[str, PromptTemplate] = {"qa": QA_TEMPLATE, "math": MATH_TEMPLATE}


def observation_content(query: str, result: str) -> str:
    """The user turn after a tool call (paper): ``QUERY -> RESULT``."""
    return f"{query} -> {result}"


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def worked_example(example: Example, documents: Mapping[str, Document]) -> WorkedExample:
    """A solved ``example`` from its own annotations: one search per supporting document, in
    the order of its supporting facts, each query the document's title and each result what the
    search tool returns for it (``documents``: the corpus by title); then the sentence of the
    last document that states the answer, and the answer."""
    titles = list(dict.fromkeys(fact.title for fact in example.supporting_facts))
    if not titles or not example.answers:
        raise ValueError(f"example {example.id!r}: a worked example needs evidence and an answer")
    turns: list[tuple[str, str | None]] = [
        (
            f"<search_query>{title}</search_query>",
            observation_content(title, format_documents([documents[title]])),
        )
        for title in titles
    ]
    answer = example.answers[0]
    stated = [s for s in _SENTENCE_END.split(documents[titles[-1]].text) if answer in s]
    if not stated:
        raise ValueError(f"example {example.id!r}: no sentence of {titles[-1]!r} states {answer!r}")
    turns.append((f"{stated[0].strip()} <answer>{answer}</answer>", None))
    return WorkedExample(question=example.question, turns=turns)


def _demo_hops_questions() -> tuple[list[Example], list[Document]]:
    from swirl.data import demo_hops

    return demo_hops.prompt_questions(), demo_hops.corpus()


# dataset -> (the training questions its prompt shows worked, its corpus)
DATASET_PROMPT_QUESTIONS: dict[str, Callable[[], tuple[list[Example], list[Document]]]] = {
    "demo-hops": _demo_hops_questions,
}


@functools.cache
def dataset_template(dataset: str) -> PromptTemplate | None:
    """The QA template with ``dataset``'s own worked examples; None when it has none."""
    source = DATASET_PROMPT_QUESTIONS.get(dataset)
    if source is None:
        return None
    questions, corpus = source()
    documents = {document.title: document for document in corpus}
    examples = [worked_example(question, documents) for question in questions]
    return msgspec.structs.replace(QA_TEMPLATE, examples=examples)


def template_for(
    example: Example, templates: Mapping[str, PromptTemplate] | None = None
) -> PromptTemplate | None:
    """The prompt template of ``example``: with the default ``templates`` (None or
    :data:`TEMPLATES`) its dataset's own (:func:`dataset_template`) when there is one, else the
    template of its task; None when there is none."""
    if templates is None or templates is TEMPLATES:
        own = dataset_template(example.dataset) if example.task == "qa" else None
        if own is not None:
            return own
        templates = TEMPLATES
    return templates.get(example.task)


def _encode(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False))


def chat_prompt_ids(tokenizer: PreTrainedTokenizerBase, messages: Sequence[Message]) -> list[int]:
    """Token ids of a conversation through the chat template, ready for the assistant's reply."""
    return _encode(tokenizer, render_chat(tokenizer, messages))


def render_chat(tokenizer: PreTrainedTokenizerBase, messages: Sequence[Message]) -> str:
    """The chat template's text of a conversation, ending with the assistant header.

    A template that rejects the system role (Gemma's) gets the system text at the top of the
    first user turn instead.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has no chat template")
    conversation = [dict(m) for m in messages]
    try:
        return tokenizer.apply_chat_template(
            conversation, tokenize=False, add_generation_prompt=True
        )
    except Exception:  # jinja2 raises its own TemplateError from the template's raise_exception
        if len(conversation) < 2 or conversation[0]["role"] != "system":
            raise
    system, first, *rest = conversation
    merged = {"role": first["role"], "content": f"{system['content']}\n\n{first['content']}"}
    return tokenizer.apply_chat_template(
        [merged, *rest], tokenize=False, add_generation_prompt=True
    )


class ChatTurns(msgspec.Struct, frozen=True):
    """Token ids the chat template puts between turns.

    ``user_open``: after an assistant turn's text, up to a user turn's text (ChatML:
    ``<|im_end|>\\n<|im_start|>user\\n``); ``assistant_open``: after a user turn's text, up to the
    assistant's reply (``<|im_end|>\\n<|im_start|>assistant\\n``).
    """

    user_open: list[int]
    assistant_open: list[int]

    @classmethod
    def from_tokenizer(cls, tokenizer: PreTrainedTokenizerBase) -> ChatTurns:
        """Render a conversation with marker texts and cut the template's text around them."""
        assistant_marker, user_marker = "\x00ASSISTANT-TURN\x00", "\x00USER-TURN\x00"
        text = render_chat(
            tokenizer,
            [
                {"role": "user", "content": "Hello."},
                {"role": "assistant", "content": assistant_marker},
                {"role": "user", "content": user_marker},
            ],
        )
        a_end = text.find(assistant_marker) + len(assistant_marker)
        u_start = text.find(user_marker)
        if a_end < len(assistant_marker) or u_start < a_end:
            raise ValueError(
                f"cannot find the turn boundaries in the chat template of {tokenizer.name_or_path!r}"
            )
        user_open = _encode(tokenizer, text[a_end:u_start])
        assistant_open = _encode(tokenizer, text[u_start + len(user_marker) :])
        if not user_open or not assistant_open:
            raise ValueError(
                f"the chat template of {tokenizer.name_or_path!r} has empty turn boundaries"
            )
        return cls(user_open=user_open, assistant_open=assistant_open)

    def observation_ids(
        self, tokenizer: PreTrainedTokenizerBase, content: str, *, turn_ids: Sequence[int] = ()
    ) -> list[int]:
        """Ids appended after an action turn (``turn_ids``, as sampled): close the turn, the user
        turn ``content``, open the assistant's next turn. A turn that already ends with the
        template's end-of-turn token (the model stopped on it) does not get it twice."""
        opening = self.user_open
        if turn_ids and turn_ids[-1] == opening[0]:
            opening = opening[1:]
        return opening + _encode(tokenizer, content) + self.assistant_open
