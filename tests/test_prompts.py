"""Prompt templates and chat-turn boundaries derived from a tokenizer's chat template."""

from __future__ import annotations

import copy

import pytest

from swirl.prompts import MATH_TEMPLATE, QA_TEMPLATE, ChatTurns, chat_prompt_ids, render_chat


@pytest.fixture(scope="module")
def tokenizer():
    from swirl.model import load_tokenizer

    return load_tokenizer()


def test_chatml_boundaries(tokenizer):
    turns = ChatTurns.from_tokenizer(tokenizer)
    assert tokenizer.decode(turns.user_open) == "<|im_end|>\n<|im_start|>user\n"
    assert tokenizer.decode(turns.assistant_open) == "<|im_end|>\n<|im_start|>assistant\n"


def test_concatenation_matches_the_template(tokenizer):
    """prompt + turn + observation ids == the template's own tokenisation of that conversation."""
    turns = ChatTurns.from_tokenizer(tokenizer)
    messages = [{"role": "user", "content": "Question: what is 3 * 4?"}]
    turn = "<math_exp>3 * 4</math_exp>"
    built = chat_prompt_ids(tokenizer, messages) + tokenizer.encode(turn)
    built += turns.observation_ids(tokenizer, "3 * 4 -> 12", turn_ids=tokenizer.encode(turn))
    full = [
        *messages,
        {"role": "assistant", "content": turn},
        {"role": "user", "content": "3 * 4 -> 12"},
    ]
    assert built == chat_prompt_ids(tokenizer, full)
    # A turn that ended on the end-of-turn token does not get it twice.
    ended = [*tokenizer.encode(turn), turns.user_open[0]]
    assert (
        turns.observation_ids(tokenizer, "x", turn_ids=ended)[: len(turns.user_open) - 1]
        == turns.user_open[1:]
    )


def test_boundaries_come_from_the_template_not_chatml(tokenizer):
    """Another template (Llama-3 style headers) gives its own boundaries."""
    other = copy.deepcopy(tokenizer)
    other.chat_template = (
        "{% for m in messages %}<|im_start|>[{{ m['role'] }}]: {{ m['content'] }}<|endoftext|>"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>[assistant]: {% endif %}"
    )
    turns = ChatTurns.from_tokenizer(other)
    assert other.decode(turns.user_open) == "<|endoftext|><|im_start|>[user]: "
    assert other.decode(turns.assistant_open) == "<|endoftext|><|im_start|>[assistant]: "
    other.chat_template = None
    with pytest.raises(ValueError, match="has no chat template"):
        ChatTurns.from_tokenizer(other)


def test_template_without_a_system_role(tokenizer):
    """Gemma-style templates refuse the system role: the instructions open the first user turn."""
    other = copy.deepcopy(tokenizer)
    other.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}"
        "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    text = render_chat(other, MATH_TEMPLATE.messages("Q?", max_steps=10, few_shot=1))
    assert text.startswith("<|im_start|>user\nSolve the problem with a calculator.")
    assert "Question: A baker" in text and text.endswith(
        "Question: Q?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_templates_say_what_the_paper_says(tokenizer):
    for template, tag, steps in (
        (QA_TEMPLATE, "<search_query>", 5),
        (MATH_TEMPLATE, "<math_exp>", 10),
    ):
        messages = template.messages("Q?", max_steps=steps, few_shot=2)
        system = messages[0]["content"]
        for needed in (
            tag,
            "<answer>",
            "->",
            "never both",
            "Do not repeat",
            f"At most {steps} turns",
        ):
            assert needed in system, (template.task, needed)
        assert messages[-1] == {"role": "user", "content": "Question: Q?"}
        # Two worked examples: their tool calls and observations appear as earlier turns.
        assert sum(m["role"] == "assistant" for m in messages) == sum(
            len(e.turns) for e in template.examples[:2]
        )
        assert len(template.messages("Q?", max_steps=steps, few_shot=0)) == 2
        with pytest.raises(ValueError, match="few_shot"):
            template.messages("Q?", max_steps=steps, few_shot=9)
        text = render_chat(tokenizer, messages)
        assert text.endswith("<|im_start|>assistant\n")
