"""Stage-1 rollout speed on the embedded model (CPU): batched episodes vs one at a time.

The same 8 seeded episodes (4 demo-math questions x 2 samples, up to 2 steps of up to 48 tokens)
run once with every live episode in one ``generate`` call per round (8 rows decoded together,
the shared instructions prefilled once) and once with one episode at a time. Seeds are per
(example, sample, step), so both produce the same trajectories and the same tokens. Prints
trajectories/s and generated tokens/s of each, and the batched / one-at-a-time ratio.
"""

from __future__ import annotations

import time

import pytest
import torch

from swirl.backends.base import SamplingParams
from swirl.backends.hf import HFBackend
from swirl.data import load_examples
from swirl.env import EnvConfig, run_episodes
from swirl.tools.calculator import Calculator

EXAMPLES = load_examples("demo-math", limit=4)
SAMPLES = 2
PARAMS = SamplingParams(max_new_tokens=48, temperature=1.0, seed=0)
results: dict[str, tuple[float, float]] = {}


@pytest.fixture(scope="module")
def embedded():
    from swirl.model import load_model

    model, tokenizer = load_model()
    return model.eval(), tokenizer


def rollout(model, tokenizer, live: int) -> tuple[int, int]:
    backend = HFBackend(model, tokenizer, max_batch_size=live)
    config = EnvConfig(max_steps=2, max_live_episodes=live)
    trajectories = list(
        run_episodes(
            EXAMPLES,
            backend,
            tools=[Calculator()],
            params=PARAMS,
            config=config,
            samples_per_question=SAMPLES,
        )
    )
    return len(trajectories), sum(len(s.token_ids) for t in trajectories for s in t.steps)


@pytest.mark.parametrize("name,live", [("one_at_a_time", 1), ("batched", 8)], ids=str)
def test_rollout_throughput(benchmark, embedded, name: str, live: int) -> None:
    model, tokenizer = embedded
    started = time.perf_counter()
    count, tokens = benchmark.pedantic(
        rollout, args=(model, tokenizer, live), rounds=1, iterations=1
    )
    seconds = time.perf_counter() - started
    assert count == len(EXAMPLES) * SAMPLES
    results[name] = (count / seconds, tokens / seconds)
    print(
        f"\n{name}: {count / seconds:.3f} trajectories/s, {tokens / seconds:.1f} generated tokens/s "
        f"({count} trajectories, {tokens} tokens, {seconds:.1f} s, {torch.get_num_threads()} threads)"
    )
    if len(results) == 2:
        one, batched = results["one_at_a_time"], results["batched"]
        print(
            f"batched / one at a time: {batched[0] / one[0]:.2f}x trajectories/s, "
            f"{batched[1] / one[1]:.2f}x tokens/s"
        )
