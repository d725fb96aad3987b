"""Generation speed of the local backend on the main job's workloads (CPU, embedded model),
against the old engine, the other engines, and a per-call roofline measured in the same run.

Workloads, at ``swirl run``'s sizes (``SWIRL_BENCH_QUICK=1``: 8 questions each, a smoke run):

- eval: greedy multi-step rollouts of 50 held-out demo-qa questions, 96 tokens per turn;
- stage1: 80 demo-qa training questions, 2 samples each at temperature 0.5, 96 tokens per turn;
- online: G=4 samples at each of 4 states of those Stage-1 trajectories (temperature 1, the
  trainer's default), 3 training steps, one ``generate`` call each; the weights change before
  each call as an optimizer step changes them, so every engine starts each call from new weights.

Engines, each on the same workload in one run (a rollout samples its own turns, so each engine's
rate is its generated tokens over its time spent generating):

- new: the fast engine, continuous batching (``run_episodes`` streams each episode's next turn
  into the batch as soon as its tool returns);
- old: the fast engine as it was at commit ``ae5d7de``, loaded from git into a temporary package,
  fed one ``generate`` call per round of turns, as ``run_episodes`` fed it then;
- reference: the transformers model with a DynamicCache (``engine="reference"``);
- transformers generate: ``model.generate`` per round (left-padded, stop strings, top-k off);
- llama.cpp: its server on the embedded GGUF (the ``xllamacpp`` wheel), per round over HTTP.

The roofline of a call is the time of the matrix products the new engine's schedule needs, at
the throughput measured for each product's row count in this run: each decode step at its live
rows, each prefill pass at its tokens (``GenerationStats``), through the model's own linears
packed as the engine packs them. Attention is not in it (it is work the engine must do, but not
a matrix product of the weights), nor sampling. Printed per workload: tokens/s (wall and per
CPU-second of this process), new/old and new/this ratios, the fraction of the roofline the new
engine reaches, mean live rows per decode step, and the ceilings of full batches of 32 and 64.

On a machine other jobs share, run it with ``OMP_WAIT_POLICY=PASSIVE``: with OpenMP's default
spinning, two threads on two busy cores wait a scheduler slice at every parallel region.
"""

from __future__ import annotations

import importlib
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

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
from swirl.backends.scheduler import GenerationStats
from swirl.data import load_examples
from swirl.decompose import decompose
from swirl.env import EnvConfig, run_episodes
from swirl.tools.factory import tools_for_examples

QUICK = os.environ.get("SWIRL_BENCH_QUICK") == "1"
EVAL_QUESTIONS = 8 if QUICK else 50
STAGE1_QUESTIONS = 8 if QUICK else 80
STAGE1_SAMPLES = 2
MAX_NEW_TOKENS = 96
ONLINE_STATES, ONLINE_G, ONLINE_STEPS = 4, 4, 3
STOP_STRINGS = ["</search_query>", "</math_exp>", "</answer>"]
OLD_COMMIT = "ae5d7de"
OLD_MODULES = ("hf", "decode", "kv_cache", "packed_linear", "prompt_tree")
# Row counts the products are timed at; others interpolate (beyond the last: its cost per row).
GEMM_ROWS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024)


@pytest.fixture(scope="module")
def embedded():
    from swirl.model import load_model

    model, tokenizer = load_model()
    return model.eval(), tokenizer


# -- the old engine, from git ------------------------------------------------------------------


def old_engine():
    """``swirl.backends.hf`` as of :data:`OLD_COMMIT` with the engine modules it imports, as a
    temporary package (its imports of those modules renamed to it)."""
    root = Path(tempfile.mkdtemp(prefix="swirl-old-engine-"))
    package = root / "swirl_old_engine"
    package.mkdir()
    (package / "__init__.py").write_text("")
    repo = Path(__file__).resolve().parent.parent
    pattern = re.compile(r"swirl\.backends\.(" + "|".join(OLD_MODULES) + r")\b")
    for name in OLD_MODULES:
        source = subprocess.run(
            ["git", "show", f"{OLD_COMMIT}:swirl/backends/{name}.py"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        (package / f"{name}.py").write_text(pattern.sub(r"swirl_old_engine.\1", source))
    sys.path.insert(0, str(root))
    return importlib.import_module("swirl_old_engine.hf")


# -- the roofline ------------------------------------------------------------------------------


class Gemm:
    """Seconds (wall and CPU) of every matrix product of one forward at M rows: the engine's own
    packed linears of every layer and the LM head, fastest of a few repeats."""

    def __init__(self, backend: HFBackend) -> None:
        self.net = backend._engine.net  # type: ignore[attr-defined]
        self.net.refresh()
        self.wall: dict[int, float] = {}
        self.cpu: dict[int, float] = {}

    @torch.inference_mode()
    def measure(self) -> None:
        for rows in GEMM_ROWS:
            inputs = self._inputs(rows)
            self._forward(inputs)
            for _ in range(3 if rows <= 128 else 1):
                wall, cpu = time.perf_counter(), time.process_time()
                self._forward(inputs)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                self.wall[rows] = min(self.wall.get(rows, wall), wall)
                self.cpu[rows] = min(self.cpu.get(rows, cpu), cpu)

    def _inputs(self, rows: int) -> dict[str, torch.Tensor]:
        layer = self.net._layers[0]
        sizes = {"x": layer.qkv.in_features, "o": layer.o.in_features}
        sizes["down"] = layer.down.in_features
        return {name: torch.randn(rows, size) for name, size in sizes.items()}

    def _forward(self, inputs: dict[str, torch.Tensor]) -> None:
        for layer in self.net._layers:
            layer.qkv(inputs["x"])
            layer.o(inputs["o"])
            layer.gate_up(inputs["x"])
            layer.down(inputs["down"])
        self.net._head(inputs["x"])

    def seconds(self, rows: int, table: dict[int, float]) -> float:
        grid = sorted(table)
        if rows >= grid[-1]:
            return table[grid[-1]] * rows / grid[-1]
        above = next(r for r in grid if r >= rows)
        below = max((r for r in grid if r <= rows), default=above)
        if above == below:
            return table[above]
        share = (rows - below) / (above - below)
        return table[below] + share * (table[above] - table[below])

    def roofline(self, stats: GenerationStats, table: dict[int, float]) -> float:
        """Seconds of the products of every decode step and prefill pass in ``stats``."""
        steps = sum(self.seconds(rows, table) for rows in stats.decode_rows)
        return steps + sum(self.seconds(tokens, table) for tokens in stats.prefill_passes)


# -- backends and rates ------------------------------------------------------------------------


@dataclass
class Rate:
    """Generated tokens, seconds spent generating (wall and CPU), decode steps."""

    tokens: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    steps: int = 0

    def per_second(self, cpu: bool = False) -> float:
        return self.tokens / max(self.cpu if cpu else self.wall, 1e-9)

    @property
    def mean_rows(self) -> float:
        return self.tokens / max(self.steps, 1)


@dataclass
class Counted:
    """A backend whose ``generate`` calls are counted (tokens, decode steps: the longest row)
    and recorded, so that other engines can replay them."""

    backend: object
    rate: Rate = field(default_factory=Rate)
    calls: list[tuple[list[list[int]], list[SamplingParams]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.name = self.backend.name
        self.tokenizer = self.backend.tokenizer
        self.context_length = self.backend.context_length

    def generate(self, prompts, params) -> list[Completion]:
        rows = params_per_prompt(params, len(prompts))
        self.calls.append(([list(p) for p in prompts], rows))
        out = self.backend.generate(prompts, rows)
        lengths = [len(c.token_ids) for c in out]
        self.rate.tokens += sum(lengths)
        self.rate.steps += max(lengths, default=0)
        return out

    def chat(self, conversations: Sequence[Sequence[Message]], params: SamplingParams):
        return self.backend.chat(conversations, params)


class TransformersGenerate:
    """``model.generate`` per call: left padding, the call's first params for all rows (a
    round shares temperature, top_p and budget), the closing action tags as stop strings."""

    def __init__(self, model, tokenizer) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.name, self.context_length = "transformers", model.config.max_position_embeddings

    @torch.inference_mode()
    def generate(self, prompts, params) -> list[Completion]:
        params = params_per_prompt(params, len(prompts))
        tokenizer, first = self.tokenizer, params[0]
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, prompt in enumerate(prompts):
            ids[row, width - len(prompt) :] = torch.tensor(prompt)
            mask[row, width - len(prompt) :] = 1
        sampling = (
            {"do_sample": True, "temperature": first.temperature, "top_p": first.top_p}
            if first.temperature > 0
            else {"do_sample": False}
        )
        if first.seed is not None:
            torch.manual_seed(first.seed)
        out = self.model.generate(
            ids,
            attention_mask=mask,
            max_new_tokens=max(p.max_new_tokens for p in params),
            top_k=0,
            stop_strings=STOP_STRINGS if first.stop_at_action else None,
            tokenizer=tokenizer,
            pad_token_id=tokenizer.pad_token_id,
            **sampling,
        )
        completions = []
        for row in out[:, width:].tolist():  # a finished row is padded with the EOS id
            eos = tokenizer.eos_token_id
            ids_ = row[: row.index(eos) + 1] if eos in row else row
            text = tokenizer.decode(ids_, skip_special_tokens=False)
            completions.append(Completion(token_ids=ids_, text=text, finish_reason="action"))
        return completions

    def chat(self, conversations, params):
        raise NotImplementedError


def llama_cpp(tokenizer, batch: int):
    """swirl's OpenAI backend on llama.cpp's server (in this process, on its own threads) with
    ``batch`` slots; None when the xllamacpp wheel is not installed."""
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
    backend.server = server  # type: ignore[attr-defined]  # lives as long as the backend
    return backend


def timed(run: Callable[[], int]) -> tuple[int, float, float]:
    """(tokens, wall seconds, CPU seconds of this process) of ``run()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    tokens = run()
    return tokens, time.perf_counter() - wall, time.process_time() - cpu


def report(name: str, rates: dict[str, Rate], gemm: Gemm, stats: GenerationStats) -> None:
    """Print the workload's table: engines, ratios, the new engine's roofline and ceilings."""
    new = rates["new"]
    print(f"\n[{name}] {torch.get_num_threads()} threads")
    print(
        f"  {'engine':24s} {'tok/s':>7s} {'tok/cpu-s':>9s} {'new/this':>8s} {'(cpu)':>6s} "
        f"{'rows/step':>9s}"
    )
    for label, rate in rates.items():
        print(
            f"  {label:24s} {rate.per_second():7.1f} {rate.per_second(cpu=True):9.1f} "
            f"{new.per_second() / rate.per_second():7.2f}x "
            f"{new.per_second(True) / rate.per_second(True):5.2f}x {rate.mean_rows:9.1f}"
        )
    wall, cpu = gemm.roofline(stats, gemm.wall), gemm.roofline(stats, gemm.cpu)
    print(
        f"  new: {len(stats.decode_rows)} decode steps at {stats.mean_rows:.1f} live rows, "
        f"{len(stats.prefill_passes)} prefill passes of {stats.prefill_tokens} tokens"
    )
    print(
        f"  per-call roofline (products only): {wall:.1f} s wall, {cpu:.1f} s CPU; "
        f"new reaches {wall / new.wall:.0%} (wall), {cpu / new.cpu:.0%} (CPU)"
    )
    for rows in (32, 64):
        print(
            f"  ceiling of full batches of {rows}: {rows / gemm.wall[rows]:.1f} tok/s, "
            f"{rows / gemm.cpu[rows]:.1f} tok/cpu-s"
        )
    costs = ", ".join(f"{rows}: {1e3 * gemm.cpu[rows] / rows:.1f}" for rows in GEMM_ROWS)
    print(f"  products' CPU ms per row at M rows (the default batch's rule): {costs}")


def rollout_tokens(backend, examples, tools, params, samples: int, live: int) -> int:
    config = EnvConfig(max_live_episodes=live)
    trajectories = run_episodes(
        examples,
        backend,
        tools=tools,
        params=params,
        config=config,
        samples_per_question=samples,
    )
    return sum(len(s.token_ids) for t in trajectories for s in t.steps)


def compare_rollouts(name, model, tokenizer, examples, tools, params, samples) -> dict:
    """Each engine rolls the workload out; returns the new engine's trajectories' states."""
    new = HFBackend(model, tokenizer)
    live = new.max_batch_size
    old = Counted(old_engine().HFBackend(model, tokenizer, max_batch_size=32))
    gemm = Gemm(new)
    gemm.measure()
    server = llama_cpp(tokenizer, 32)
    engines = {
        "new": new,
        "old (ae5d7de)": old,
        "reference engine": Counted(HFBackend(model, tokenizer, engine="reference")),
        "transformers generate": Counted(TransformersGenerate(model, tokenizer)),
        "llama.cpp server (GGUF)": None if server is None else Counted(server),
    }
    rates: dict[str, Rate] = {}
    for label, backend in engines.items():
        if backend is None:
            continue
        # The old engine ran 32 episodes at a time (EnvConfig's default then).
        width = 32 if label != "new" else live
        tokens, wall, cpu = timed(
            lambda b=backend, w=width: rollout_tokens(b, examples, tools, params, samples, w)
        )
        steps = len(new.stats.decode_rows) if label == "new" else backend.rate.steps
        rates[label] = Rate(tokens, wall, cpu, steps)
    gemm.measure()  # again after: the fastest of both stands
    report(name, rates, gemm, new.stats)
    if "llama.cpp server (GGUF)" not in rates:
        print("  llama.cpp server (GGUF): xllamacpp not installed")
    return rates


# -- the three workloads -----------------------------------------------------------------------


def test_eval_workload(benchmark, embedded) -> None:
    model, tokenizer = embedded
    examples = load_examples("demo-qa", split="test", limit=EVAL_QUESTIONS, seed=0)
    tools = tools_for_examples(examples, "demo-qa", split="test")
    params = SamplingParams(max_new_tokens=MAX_NEW_TOKENS, temperature=0.0, seed=0)
    benchmark.pedantic(
        compare_rollouts,
        args=("eval", model, tokenizer, examples, tools, params, 1),
        rounds=1,
        iterations=1,
    )


def test_stage1_workload(benchmark, embedded) -> None:
    model, tokenizer = embedded
    examples = load_examples("demo-qa", split="train", limit=STAGE1_QUESTIONS, seed=0)
    tools = tools_for_examples(examples, "demo-qa", split="train")
    params = SamplingParams(max_new_tokens=MAX_NEW_TOKENS, temperature=0.5, seed=0)
    benchmark.pedantic(
        compare_rollouts,
        args=("stage1", model, tokenizer, examples, tools, params, STAGE1_SAMPLES),
        rounds=1,
        iterations=1,
    )


def online_calls(model, tokenizer) -> list[tuple[list[list[int]], list[SamplingParams]]]:
    """The online workload's calls: G samples at each of a few states of Stage-1 trajectories
    (a quick greedy rollout of 8 training questions makes them)."""
    examples = load_examples("demo-qa", split="train", limit=8, seed=0)
    tools = tools_for_examples(examples, "demo-qa", split="train")
    params = SamplingParams(max_new_tokens=MAX_NEW_TOKENS, temperature=0.5, seed=0)
    backend = HFBackend(model, tokenizer)
    trajectories = list(
        run_episodes(examples, backend, tools=tools, params=params, samples_per_question=2)
    )
    states = [s for t in trajectories for s in decompose(t)]
    picked = random.Random(0).sample(states, ONLINE_STATES)
    print(f"\n[online] state lengths {sorted(len(s.state_token_ids) for s in picked)}")
    calls = []
    for step in range(ONLINE_STEPS):
        prompts, rows = [], []
        for state in picked:
            for sample in range(ONLINE_G):
                key = (0, step, state.trajectory_id, state.step_index, sample)
                prompts.append(list(state.state_token_ids))
                rows.append(
                    SamplingParams(
                        max_new_tokens=MAX_NEW_TOKENS, temperature=1.0, seed=derive_seed(*key)
                    )
                )
        calls.append((prompts, rows))
    return calls


def test_online_workload(benchmark, embedded) -> None:
    """One call per training step; before each, the weights get a new version as after an
    optimizer step (values unchanged), so the engines repack them and recompute the prefix."""
    model, tokenizer = embedded
    calls = online_calls(model, tokenizer)
    rows = ONLINE_STATES * ONLINE_G

    def new_weights() -> None:
        with torch.no_grad():
            model.lm_head.weight.add_(0.0)

    def replay() -> dict[str, Rate]:
        new = HFBackend(model, tokenizer, max_batch_size=rows)
        gemm = Gemm(new)
        gemm.measure()
        engines = {
            "new": new,
            "old (ae5d7de)": old_engine().HFBackend(model, tokenizer, max_batch_size=rows),
            "reference engine": HFBackend(model, tokenizer, engine="reference"),
            "transformers generate": TransformersGenerate(model, tokenizer),
            "llama.cpp server (GGUF)": llama_cpp(tokenizer, rows),
        }
        rates = {label: Rate() for label, backend in engines.items() if backend is not None}
        for prompts, params in calls:  # call by call, so a load change hits every engine
            for label, backend in engines.items():
                if backend is None:
                    continue
                new_weights()
                out: list[Completion] = []

                def run(b=backend, o=out, p=prompts, s=params) -> int:
                    o.extend(b.generate(p, s))
                    return sum(len(c.token_ids) for c in o)

                tokens, wall, cpu = timed(run)
                rate = rates[label]
                rate.tokens, rate.wall, rate.cpu = (
                    rate.tokens + tokens,
                    rate.wall + wall,
                    rate.cpu + cpu,
                )
                rate.steps += max(len(c.token_ids) for c in out)
        rates["new"].steps = len(new.stats.decode_rows)
        gemm.measure()
        report("online", rates, gemm, new.stats)
        return rates

    benchmark.pedantic(replay, rounds=1, iterations=1)
