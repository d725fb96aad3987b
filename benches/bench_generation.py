"""Generation speed of the local backend on the main job's workloads (CPU, embedded model).

The three workloads of ``swirl run``, at its default sizes (``SWIRL_BENCH_QUICK=1``: 8 questions
each, for a smoke run):

- eval: greedy multi-step rollouts of 50 held-out demo-qa questions, 96 tokens per turn;
- stage1: 80 demo-qa training questions, 2 samples each at temperature 0.5, 96 tokens per turn;
- online: G=4 samples at each of 4 states of those Stage-1 trajectories (temperature 1, the
  trainer's default), 3 training steps; the weights change before each step as an optimizer
  step would change them, so every engine starts each step from new weights.

The rollouts run once through ``run_episodes`` (fast engine) and every ``generate`` call is
recorded. Then each recorded call is replayed, with the same prompts and parameters, by the fast
engine, the reference engine, transformers' ``model.generate`` (one batched call, left-padded,
the closing action tags as stop strings, top-k off), llama.cpp's server on the embedded GGUF
(when the ``xllamacpp`` wheel is installed: B slots batched continuously, over HTTP) and one
bare forward for the ceiling, call by call, so a load change on the shared machine hits them all.
Printed per workload: generated tokens/s of each (every sampled token, over the time spent
generating), the ceiling (the transformers model's fp32 forward of B single tokens without a KV
cache, B the workload's batch), the fraction of it each engine reaches, and the mean rows per
decode step (a batch shrinks as its rows stop).

On a machine other jobs share, run it with ``OMP_WAIT_POLICY=PASSIVE``: with OpenMP's default
spinning, two threads on two busy cores wait a scheduler slice at every parallel region, and an
engine of many small operations (the fast one) slows down by an order of magnitude more than one
of few large ones (measured beside another 2-thread job: 9 against 87 generated tokens/s on the
online workload, default against passive).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest
import torch

from swirl.backends.base import (
    Completion,
    Message,
    SamplingParams,
    derive_seed,
    params_per_prompt,
)
from swirl.backends.hf import HFBackend
from swirl.data import load_examples
from swirl.decompose import decompose
from swirl.env import EnvConfig, run_episodes
from swirl.schema import Trajectory
from swirl.tools.calculator import Calculator
from swirl.tools.factory import tools_for_examples

QUICK = os.environ.get("SWIRL_BENCH_QUICK") == "1"
EVAL_QUESTIONS = 8 if QUICK else 50
STAGE1_QUESTIONS = 8 if QUICK else 80
STAGE1_SAMPLES = 2
MAX_NEW_TOKENS = 96
ONLINE_STATES, ONLINE_G, ONLINE_STEPS = 4, 4, 3
STOP_STRINGS = ["</search_query>", "</math_exp>", "</answer>"]
LLAMA_CPP = "llama.cpp server (GGUF)"


@pytest.fixture(scope="module")
def embedded():
    from swirl.model import load_model

    model, tokenizer = load_model()
    return model.eval(), tokenizer


# -- recording and replaying generate calls ----------------------------------------------------


@dataclass
class Rate:
    """Generated tokens, seconds spent generating, and decode steps (the longest row per call)."""

    tokens: int = 0
    seconds: float = 0.0
    steps: int = 0

    def add(self, lengths: Sequence[int], seconds: float) -> None:
        self.tokens += sum(lengths)
        self.seconds += seconds
        self.steps += max(lengths, default=0)

    @property
    def per_second(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)

    @property
    def mean_rows(self) -> float:
        """Rows per decode step, averaged over steps (a batch shrinks as its rows stop)."""
        return self.tokens / max(self.steps, 1)


@dataclass
class Call:
    prompts: list[list[int]]
    params: list[SamplingParams]


@dataclass
class Recorder:
    """A backend that records every ``generate`` call of the backend it wraps."""

    backend: HFBackend
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.name = self.backend.name
        self.tokenizer = self.backend.tokenizer
        self.context_length = self.backend.context_length

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        params: SamplingParams | Sequence[SamplingParams],
    ) -> list[Completion]:
        rows = params_per_prompt(params, len(prompts))
        self.calls.append(Call([list(p) for p in prompts], rows))
        return self.backend.generate(prompts, rows)

    def chat(self, conversations: Sequence[Sequence[Message]], params: SamplingParams) -> list[str]:
        return self.backend.chat(conversations, params)


Run = Callable[[Call], tuple[list[int], float]]  # one call -> (tokens per row, seconds)


def backend_runner(backend: HFBackend, before: Callable[[], None] | None = None) -> Run:
    def run(call: Call) -> tuple[list[int], float]:
        if before is not None:
            before()
        started = time.perf_counter()
        out = backend.generate(call.prompts, call.params)
        return [len(c.token_ids) for c in out], time.perf_counter() - started

    return run


def transformers_runner(model, tokenizer) -> Run:
    """Each call as one ``model.generate``: left padding, sampling as the call's params."""
    eos = tokenizer.eos_token_id

    @torch.inference_mode()
    def run(call: Call) -> tuple[list[int], float]:
        width = max(len(p) for p in call.prompts)
        ids = torch.full((len(call.prompts), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, prompt in enumerate(call.prompts):
            ids[row, width - len(prompt) :] = torch.tensor(prompt)
            mask[row, width - len(prompt) :] = 1
        first = call.params[0]  # a recorded call shares temperature, top_p and budget
        sampling = (
            {"do_sample": True, "temperature": first.temperature, "top_p": first.top_p}
            if first.temperature > 0
            else {"do_sample": False}
        )
        if first.seed is not None:
            torch.manual_seed(first.seed)
        started = time.perf_counter()
        out = model.generate(
            ids,
            attention_mask=mask,
            max_new_tokens=max(p.max_new_tokens for p in call.params),
            top_k=0,
            stop_strings=STOP_STRINGS if first.stop_at_action else None,
            tokenizer=tokenizer,
            pad_token_id=tokenizer.pad_token_id,
            **sampling,
        )
        seconds = time.perf_counter() - started
        # A finished row is padded with the EOS id.
        rows = out[:, width:].tolist()
        return [row.index(eos) + 1 if eos in row else len(row) for row in rows], seconds

    return run


def llama_cpp_runner(tokenizer, batch: int) -> Run | None:
    """Each call through llama.cpp's server (in this process, on its own threads) with
    ``batch`` slots decoding together, over HTTP as swirl's OpenAI backend sends it; None when
    the xllamacpp wheel is not installed."""
    try:
        import xllamacpp
    except ImportError:
        return None
    from swirl.backends.openai import OpenAIBackend
    from swirl.model import embedded_gguf_path

    params = xllamacpp.CommonParams()
    params.model.path = str(embedded_gguf_path())
    params.n_parallel = batch
    params.n_ctx = 4096 * batch
    params.cpuparams.n_threads = torch.get_num_threads()
    server = xllamacpp.Server(params)
    backend = OpenAIBackend(
        f"{server.listening_address}/v1", tokenizer, context_length=4096, max_concurrency=batch
    )
    run = backend_runner(backend)  # type: ignore[arg-type]
    run.server = server  # type: ignore[attr-defined]  # lives as long as the runner
    return run


def ceiling_runner(model, batch: int, forwards: int = 3) -> Run:
    """Bare fp32 forwards of ``batch`` single tokens (no KV cache, no attention over a context),
    each one decode step of a perfect engine on transformers' own layers."""
    ids = torch.randint(0, model.config.vocab_size, (batch, 1))

    @torch.inference_mode()
    def run(call: Call) -> tuple[list[int], float]:
        started = time.perf_counter()
        for _ in range(forwards):
            model(input_ids=ids, use_cache=False)
        return [forwards] * batch, time.perf_counter() - started

    return run


def compare(
    name: str,
    model,
    tokenizer,
    calls: Sequence[Call],
    batch: int,
    *,
    before_fast: Callable[[], None] | None = None,
) -> dict[str, Rate]:
    """Replay ``calls`` on every engine, interleaved call by call so that a load change on the
    machine hits all of them alike, and print the table."""
    runs: dict[str, Run | None] = {
        "new (fast engine)": backend_runner(
            HFBackend(model, tokenizer, engine="fast", max_batch_size=batch), before_fast
        ),
        "reference engine": backend_runner(
            HFBackend(model, tokenizer, engine="reference", max_batch_size=batch)
        ),
        "transformers generate": transformers_runner(model, tokenizer),
        LLAMA_CPP: llama_cpp_runner(tokenizer, batch),
        "ceiling": ceiling_runner(model, batch),
    }
    ceiling_runner(model, batch)(calls[0])  # warm-up
    rates = {label: Rate() for label, run in runs.items() if run is not None}
    for call in calls:
        for label, run in runs.items():
            if run is not None:
                rates[label].add(*run(call))
    top, new = rates.pop("ceiling").per_second, rates["new (fast engine)"].per_second
    print(
        f"\n[{name}] {len(calls)} generate calls, {sum(len(c.prompts) for c in calls)} rows, "
        f"batch {batch}, {torch.get_num_threads()} threads"
        + (", fresh weights before each fast call" if before_fast else "")
    )
    print(f"  {'engine':28s} {'tok/s':>8s} {'new/this':>9s} {'of ceiling':>10s} {'rows/step':>9s}")
    for label, rate in rates.items():
        print(
            f"  {label:28s} {rate.per_second:8.1f} {new / rate.per_second:8.2f}x "
            f"{rate.per_second / top:9.0%} {rate.mean_rows:9.1f}"
        )
    if LLAMA_CPP not in rates:
        print(f"  {LLAMA_CPP:28s} (xllamacpp not installed)")
    print(f"  {'ceiling (bare forward, B=' + str(batch) + ')':28s} {top:8.1f}")
    return rates


def rollout(backend: Recorder, examples, tools, params: SamplingParams, samples: int) -> list:
    return list(
        run_episodes(
            examples,
            backend,
            tools=tools,
            params=params,
            config=EnvConfig(),
            samples_per_question=samples,
        )
    )


# -- the three workloads -----------------------------------------------------------------------


def test_eval_workload(benchmark, embedded) -> None:
    model, tokenizer = embedded
    examples = load_examples("demo-qa", split="test", limit=EVAL_QUESTIONS, seed=0)
    tools = tools_for_examples(examples, "demo-qa", split="test")
    params = SamplingParams(max_new_tokens=MAX_NEW_TOKENS, temperature=0.0, seed=0)
    batch = EnvConfig().max_live_episodes
    recorder = Recorder(HFBackend(model, tokenizer, max_batch_size=batch))
    trajectories = rollout(recorder, examples, tools, params, 1)
    assert len(trajectories) == len(examples)
    benchmark.pedantic(
        compare, args=("eval", model, tokenizer, recorder.calls, batch), rounds=1, iterations=1
    )


@pytest.fixture(scope="module")
def stage1(embedded) -> tuple[list[Call], list[Trajectory]]:
    """The Stage-1 rollout's generate calls and trajectories (shared with the online workload)."""
    model, tokenizer = embedded
    examples = load_examples("demo-qa", split="train", limit=STAGE1_QUESTIONS, seed=0)
    tools = tools_for_examples(examples, "demo-qa", split="train")
    params = SamplingParams(max_new_tokens=MAX_NEW_TOKENS, temperature=0.5, seed=0)
    recorder = Recorder(HFBackend(model, tokenizer, max_batch_size=EnvConfig().max_live_episodes))
    return recorder.calls, rollout(recorder, examples, tools, params, STAGE1_SAMPLES)


def test_stage1_workload(benchmark, embedded, stage1) -> None:
    model, tokenizer = embedded
    calls, trajectories = stage1
    assert len(trajectories) == STAGE1_QUESTIONS * STAGE1_SAMPLES
    batch = EnvConfig().max_live_episodes
    benchmark.pedantic(
        compare, args=("stage1", model, tokenizer, calls, batch), rounds=1, iterations=1
    )


def test_online_workload(benchmark, embedded, stage1) -> None:
    """One call per training step; before each, the fast engine's weights get a new version as
    after an optimizer step (values unchanged), so it repacks them and recomputes the prefix."""
    model, tokenizer = embedded
    _, trajectories = stage1
    states = [s for t in trajectories for s in decompose(t)]
    picked = random.Random(0).sample(states, ONLINE_STATES)
    print(f"\n[online] state lengths {sorted(len(s.state_token_ids) for s in picked)}")
    calls = []
    for step in range(ONLINE_STEPS):
        call = Call([], [])
        for state in picked:
            for sample in range(ONLINE_G):
                key = (0, step, state.trajectory_id, state.step_index, sample)
                call.prompts.append(state.state_token_ids)
                call.params.append(
                    SamplingParams(
                        max_new_tokens=MAX_NEW_TOKENS, temperature=1.0, seed=derive_seed(*key)
                    )
                )
        calls.append(call)

    def new_weights() -> None:
        with torch.no_grad():
            model.lm_head.weight.add_(0.0)

    benchmark.pedantic(
        compare,
        args=("online", model, tokenizer, calls, ONLINE_STATES * ONLINE_G),
        kwargs={"before_fast": new_weights},
        rounds=1,
        iterations=1,
    )


# -- batching in the environment loop ----------------------------------------------------------

BATCHING_EXAMPLES = load_examples("demo-math", limit=4)
BATCHING_PARAMS = SamplingParams(max_new_tokens=48, temperature=1.0, seed=0)
batching_results: dict[str, tuple[float, float]] = {}


def batching_rollout(model, tokenizer, live: int) -> tuple[int, int]:
    backend = HFBackend(model, tokenizer, max_batch_size=live)
    config = EnvConfig(max_steps=2, max_live_episodes=live)
    trajectories = list(
        run_episodes(
            BATCHING_EXAMPLES,
            backend,
            tools=[Calculator()],
            params=BATCHING_PARAMS,
            config=config,
            samples_per_question=2,
        )
    )
    return len(trajectories), sum(len(s.token_ids) for t in trajectories for s in t.steps)


@pytest.mark.parametrize("name,live", [("one_at_a_time", 1), ("batched", 8)], ids=str)
def test_rollout_batching(benchmark, embedded, name: str, live: int) -> None:
    """The same 8 seeded episodes (4 demo-math questions x 2 samples, 2 steps of up to 48 tokens)
    with every live episode in one ``generate`` call per round, and one episode at a time."""
    model, tokenizer = embedded
    started = time.perf_counter()
    count, tokens = benchmark.pedantic(
        batching_rollout, args=(model, tokenizer, live), rounds=1, iterations=1
    )
    seconds = time.perf_counter() - started
    batching_results[name] = (count / seconds, tokens / seconds)
    print(f"\n{name}: {count / seconds:.3f} trajectories/s, {tokens / seconds:.1f} tokens/s")
    if len(batching_results) == 2:
        one, batched = batching_results["one_at_a_time"], batching_results["batched"]
        print(f"batched / one at a time: {batched[1] / one[1]:.2f}x tokens/s")
