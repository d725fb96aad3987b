"""One training forward+backward on the embedded model (CPU): packed token tree vs naive
per-sub-trajectory sequences, on a realistic demo batch.

The batch: a ~650-token few-shot prompt (instructions and three worked examples), a question, and
its recorded trajectory of 4 steps (a thought with a tool call, then the tool's result); at each
of the 4 states G=4 sampled actions. Naive: each (state, sampled action) is its own sequence, one
forward+backward each (16); packed: one forward+backward of the token tree. Both compute
log p(action token) with the LM head on the action rows only and backpropagate the same weighted
loss (checked equal). Runs single-threaded by default (SWIRL_BENCH_THREADS): on a shared 2-core
machine two threads are slower.

    .venv/bin/pytest benches/bench_packed_forward.py --benchmark-enable -s
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

from benches.timing import fastest
from swirl.model import load_model
from swirl.packed_forward import packed_forward
from swirl.packing import Branch, PackedBatch, TreeSequence, pack

PROMPT = """You are a careful research assistant. You answer a question in several steps. In every turn you
first think briefly, then do exactly one of the following:
- search the knowledge base with <search_query>your query</search_query>;
- compute an arithmetic expression with <math_exp>your expression</math_exp>;
- give the final answer with <answer>your answer</answer>.
After a search or a computation the environment replies in a new user turn written
QUERY -> RESULT. Use the results you have seen; do not repeat a query; never search and answer in
the same turn. You have at most 5 actions. If the results do not support an answer, keep searching.

Example 1.
Question: Which river flows through the city where the composer of "The Moldau" was born?
Assistant: The Moldau was composed by Bedrich Smetana. I need his birthplace.
<search_query>Bedrich Smetana birthplace</search_query>
User: Bedrich Smetana birthplace -> Bedrich Smetana (2 March 1824 - 12 May 1884) was a Czech composer, born in Litomysl, a town in eastern Bohemia.
Assistant: Smetana was born in Litomysl. Now I need the river of Litomysl.
<search_query>Litomysl river</search_query>
User: Litomysl river -> Litomysl is a town in the Pardubice Region of the Czech Republic. It lies on the Loucna river, about 60 km south-east of Hradec Kralove.
Assistant: Litomysl lies on the Loucna river. <answer>The Loucna</answer>

Example 2.
Question: A bakery sells 126 loaves a day for 4 days and 98 loaves on the fifth day. How many loaves does it sell in those five days?
Assistant: The total is 126 loaves times 4 days plus 98 loaves.
<math_exp>126 * 4 + 98</math_exp>
User: 126 * 4 + 98 -> 602
Assistant: The bakery sells 602 loaves in five days. <answer>602</answer>

Example 3.
Question: A train travels at 84 km per hour for 2.5 hours. How far does it go?
Assistant: The distance is the speed times the time. <math_exp>84 * 2.5</math_exp>
User: 84 * 2.5 -> 210.0
Assistant: The train goes 210 km. <answer>210 km</answer>

Now solve the next question in the same way.
"""
QUESTION = 'Question: How many years passed between the founding of the university where the author of "The Hobbit" taught and the year the book was published?\n'
STEPS = [
    (
        "Assistant: The Hobbit was written by J. R. R. Tolkien. I need the university where he taught. <search_query>J. R. R. Tolkien university professor</search_query>\n",
        "User: J. R. R. Tolkien university professor -> John Ronald Reuel Tolkien was an English writer and philologist. He was the Rawlinson and Bosworth Professor of Anglo-Saxon at the University of Oxford from 1925 to 1945.\n",
    ),
    (
        "Assistant: Tolkien taught at the University of Oxford. Now I need its founding year. <search_query>University of Oxford founded year</search_query>\n",
        "User: University of Oxford founded year -> The University of Oxford is a collegiate research university in Oxford, England. There is evidence of teaching as early as 1096.\n",
    ),
    (
        "Assistant: Oxford dates from 1096. Now the publication year of The Hobbit. <search_query>The Hobbit publication year</search_query>\n",
        "User: The Hobbit publication year -> The Hobbit, or There and Back Again is a children's fantasy novel by J. R. R. Tolkien. It was published in 1937.\n",
    ),
    (
        "Assistant: The difference is 1937 minus 1096. <math_exp>1937 - 1096</math_exp>\n",
        "User: 1937 - 1096 -> 841\n",
    ),
]
SAMPLES = [  # G = 4 sampled actions for each of the 4 states
    [
        "Assistant: The author of The Hobbit is Tolkien. <search_query>Tolkien Oxford professor</search_query>",
        "Assistant: I will find who wrote The Hobbit first. <search_query>The Hobbit author</search_query>",
        "Assistant: Tolkien taught at a university. <search_query>where did Tolkien teach</search_query>",
        "Assistant: <search_query>J. R. R. Tolkien</search_query>",
    ],
    [
        "Assistant: I need the founding year of Oxford. <search_query>Oxford university founding</search_query>",
        "Assistant: <search_query>when was the University of Oxford founded</search_query>",
        "Assistant: Oxford is old; let me check. <search_query>history of the University of Oxford</search_query>",
        "Assistant: The university is Oxford. <search_query>Oxford established</search_query>",
    ],
    [
        "Assistant: Now the year The Hobbit appeared. <search_query>The Hobbit first published</search_query>",
        "Assistant: <search_query>Hobbit 1937</search_query>",
        "Assistant: I still need the publication year. <search_query>publication date of The Hobbit</search_query>",
        "Assistant: The Hobbit was published in 1937, I think. <answer>841</answer>",
    ],
    [
        "Assistant: <math_exp>1937 - 1096</math_exp>",
        "Assistant: I subtract the founding year from the publication year. <math_exp>1937-1096</math_exp>",
        "Assistant: 1937 - 1096 = 841. <answer>841 years</answer>",
        "Assistant: The answer follows from the results. <answer>841</answer>",
    ],
]


def demo_batch(tokenizer) -> list[TreeSequence]:
    """The trajectory as token ids (each piece tokenised once, never re-tokenised)."""

    def ids(text: str) -> np.ndarray:
        return np.array(tokenizer(text, add_special_tokens=False)["input_ids"], np.int32)

    pieces, states = [ids(PROMPT), ids(QUESTION)], []
    for action, result in STEPS:
        states.append(sum(p.size for p in pieces))
        pieces += [ids(action), ids(result)]
    rng = np.random.default_rng(0)
    branches = [
        Branch(state, ids(sample), float(rng.normal()))
        for state, samples in zip(states, SAMPLES, strict=True)
        for sample in samples
    ]
    return [TreeSequence(np.concatenate(pieces), branches)]


def packed_step(model, batch: PackedBatch) -> float:
    """Forward + backward of the weighted log-likelihood of every target, packed; returns the loss."""
    hidden = packed_forward(model, batch)
    rows = hidden.reshape(-1, hidden.shape[-1])[torch.from_numpy(batch.target_rows)]
    logp = model.lm_head(rows).float().log_softmax(-1)
    logp = logp.gather(1, torch.from_numpy(batch.target_ids).long()[:, None]).squeeze(1)
    loss = -(torch.from_numpy(batch.target_weights) * logp).sum()
    loss.backward()
    return loss.item()


def naive_step(model, sequences: list[TreeSequence]) -> float:
    """The same loss, one forward + backward per (state, action) sequence; returns the loss."""
    total = 0.0
    for seq in sequences:
        for branch in seq.branches:
            ids = torch.from_numpy(np.concatenate([seq.context[: branch.offset], branch.tokens]))
            hidden = model.model(input_ids=ids.long()[None]).last_hidden_state[0]
            rows = hidden[branch.offset - 1 : -1]  # the rows predicting the action tokens
            logp = model.lm_head(rows).float().log_softmax(-1)
            logp = logp.gather(1, torch.from_numpy(branch.tokens).long()[:, None]).sum()
            loss = -branch.weight * logp
            loss.backward()
            total += loss.item()
    return total


@pytest.fixture(scope="module")
def model_and_tokenizer():
    threads = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("SWIRL_BENCH_THREADS", "1")))
    model, tokenizer = load_model()
    model.train()
    yield model, tokenizer
    torch.set_num_threads(threads)


def test_packed_vs_naive_training_step(benchmark, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    sequences = demo_batch(tokenizer)
    batch = pack(sequences, 4096, vocab_size=model.config.vocab_size)

    model.zero_grad(set_to_none=True)
    packed_loss, packed_time = fastest(benchmark, packed_step, model, batch, rounds=1)
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    naive_loss = naive_step(model, sequences)
    naive_time = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    assert packed_loss == pytest.approx(naive_loss, rel=1e-4)

    rows, length = batch.shape
    prompt = len(tokenizer(PROMPT, add_special_tokens=False)["input_ids"])
    print(
        f"\nprompt {prompt} tokens, context {sequences[0].context.size} tokens, {len(STEPS)} steps, G={len(SAMPLES[0])}: {batch.num_branches} sub-trajectories, "
        f"{batch.num_targets} target tokens, threads={torch.get_num_threads()}\n"
        f"tokens: naive {batch.naive_tokens:,} vs packed {batch.packed_tokens:,} "
        f"({rows} x {length}) -> {batch.ratio:.1f}x fewer\n"
        f"forward+backward: naive {naive_time:.1f} s vs packed {packed_time:.1f} s "
        f"-> {naive_time / packed_time:.1f}x faster"
    )
