"""Trainer building blocks: advantages, LR schedule, checkpoints, metrics log, plots."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from swirl.training.advantages import group_advantages
from swirl.training.checkpoint import latest_checkpoint, load_trainer_state, save_checkpoint
from swirl.training.metrics_log import MetricsLog, read_metrics
from swirl.training.plots import plot_curves
from swirl.training.schedule import lr_factor, make_scheduler


def test_group_mean_and_std() -> None:
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0])
    group = torch.tensor([7, 7, 7, 3, 3, 3, 9])
    adv = group_advantages(rewards, group)
    expected = torch.tensor([1 / 3, -2 / 3, 1 / 3, 2 / 3, -1 / 3, -1 / 3, 0.0])
    torch.testing.assert_close(adv, expected)
    scaled = group_advantages(rewards, group, scale_by_std=True)
    std = torch.tensor(
        [2**0.5 / 3, 2**0.5 / 3, 2**0.5 / 3, 2**0.5 / 3, 2**0.5 / 3, 2**0.5 / 3, 0.0]
    )
    torch.testing.assert_close(scaled, expected / (std + 1e-6))


def test_rloo_is_leave_one_out() -> None:
    rewards = torch.tensor([1.0, 0.0, 0.5, 2.0, 4.0])
    group = torch.tensor([0, 0, 0, 1, 2])
    adv = group_advantages(rewards, group, baseline="rloo")
    torch.testing.assert_close(adv, torch.tensor([0.75, -0.75, 0.0, 0.0, 0.0]))


def test_equal_rewards_give_zero_and_batch_mean() -> None:
    assert group_advantages(torch.ones(4), torch.tensor([0, 0, 1, 1])).abs().max() == 0
    torch.testing.assert_close(
        group_advantages(
            torch.tensor([1.0, 0.0, 0.0, 1.0]), torch.arange(4), baseline="batch_mean"
        ),
        torch.tensor([0.5, -0.5, -0.5, 0.5]),
    )
    with pytest.raises(ValueError, match="baseline"):
        group_advantages(torch.ones(2), torch.zeros(2, dtype=torch.long), baseline="mean")  # type: ignore[arg-type]


def test_schedule() -> None:
    factors = [lr_factor(s, total_steps=10, warmup_steps=2, schedule="cosine") for s in range(10)]
    assert factors[:2] == [0.5, 1.0] and factors[2] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(factors[2:]))
    assert factors[-1] == pytest.approx(
        0.1 + 0.9 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * 7 / 8)).item())
    )
    assert lr_factor(5, total_steps=10, warmup_steps=0, schedule="constant") == 1.0


def tiny_model() -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(config)


def test_checkpoint_restores_optimizer_and_rng(tmp_path: Path) -> None:
    model = tiny_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = make_scheduler(optimizer, total_steps=5, warmup_steps=1, schedule="cosine")
    model(torch.tensor([[1, 2, 3]])).logits.sum().backward()
    optimizer.step()
    scheduler.step()
    path = save_checkpoint(
        tmp_path,
        step=1,
        model=model,
        tokenizer=None,
        model_state=model.state_dict(),
        optimizer_state=optimizer.state_dict(),
        scheduler=scheduler,
        state={"data_position": 7},
    )
    expected_draw = torch.rand(3)

    fresh = tiny_model()
    fresh_optimizer = torch.optim.AdamW(fresh.parameters(), lr=1e-3)
    fresh_scheduler = make_scheduler(
        fresh_optimizer, total_steps=5, warmup_steps=1, schedule="cosine"
    )
    assert latest_checkpoint(tmp_path) == path
    optimizer_state, state = load_trainer_state(path, scheduler=fresh_scheduler)
    fresh_optimizer.load_state_dict(optimizer_state)
    assert state == {"step": 1, "data_position": 7}
    torch.testing.assert_close(torch.rand(3), expected_draw)  # RNG continues where it was saved
    assert fresh_scheduler.last_epoch == 1
    moments = fresh_optimizer.state_dict()["state"][0]["exp_avg"]
    torch.testing.assert_close(moments, optimizer.state_dict()["state"][0]["exp_avg"])
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(path / "model")
    for a, b in zip(reloaded.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_checkpoint_pruning_and_missing(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path) is None
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = make_scheduler(optimizer, total_steps=5, warmup_steps=0, schedule="constant")
    for step in (1, 2, 3):
        save_checkpoint(
            tmp_path,
            step=step,
            model=model,
            tokenizer=None,
            model_state=model.state_dict(),
            optimizer_state=optimizer.state_dict(),
            scheduler=scheduler,
            state={},
            keep_last=2,
        )
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-000002", "step-000003"]
    assert latest_checkpoint(tmp_path).name == "step-000003"


def test_metrics_log_resume_drops_later_steps(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path)
    for step in (1, 2, 3):
        log.log({"step": step, "loss": 1.0 / step, "reward": step / 3})
    log.close()
    resumed = MetricsLog(path, resume_step=2)
    resumed.log({"step": 3, "loss": 0.0, "reward": 1.0})
    resumed.close()
    assert [(r["step"], r["loss"]) for r in read_metrics(path)] == [(1, 1.0), (2, 0.5), (3, 0.0)]
    png = plot_curves(read_metrics(path), ["reward", "loss", "kl"], tmp_path / "curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no records"):
        plot_curves(read_metrics(path), ["kl"], tmp_path / "none.png")


def test_state_stream_is_resumable() -> None:
    from swirl.schema import Action, Step, Trajectory
    from swirl.training.states import StateStream, training_states

    trajectories = [
        Trajectory(
            id=f"t{t}",
            example_id="e",
            prompt_text="",
            prompt_token_ids=[1],
            steps=[
                Step(text="", token_ids=[t, k], action=Action("none", "", "", -1, -1))
                for k in range(3)
            ],
            termination="step_cap",
        )
        for t in range(4)
    ]
    states = training_states(trajectories)
    assert len(states) == 12
    whole = StateStream(states, seed=3).take(30)  # crosses two epoch boundaries
    first = StateStream(states, seed=3)
    part = first.take(13)
    resumed = StateStream(states, seed=3, position=first.position)
    assert part + resumed.take(17) == whole
    epoch = whole[:12]
    assert sorted((s.trajectory_id, s.step_index) for s in epoch) == sorted(
        (s.trajectory_id, s.step_index) for s in states
    )
    with pytest.raises(ValueError, match="no training states"):
        StateStream([], seed=0)


def _trajectory(name: str, prompt: list[int], steps: list[tuple[list[int], list[int]]]):
    """A trajectory of (action ids, observation ids) steps after ``prompt``."""
    from swirl.schema import Action, Step, Trajectory

    action = Action(kind="none", payload="", thought="", start=-1, end=-1)
    return Trajectory(
        id=name,
        example_id="e",
        prompt_text="",
        prompt_token_ids=prompt,
        steps=[
            Step(text="", token_ids=ids, action=action, observation_token_ids=seen)
            for ids, seen in steps
        ],
        termination="step_cap",
    )


def test_states_are_views_of_one_sequence_equal_to_decompose():
    from swirl.decompose import decompose
    from swirl.training.states import trajectory_states

    trajectory = _trajectory("t", [1, 2], [([3, 4], [5]), ([6], [7, 8]), ([9], [])])
    states = trajectory_states(trajectory)
    copies = decompose(trajectory)
    assert [s.state_token_ids.tolist() for s in states] == [c.state_token_ids for c in copies]
    assert [s.action_token_ids for s in states] == [c.action_token_ids for c in copies]
    assert [s.offset for s in states] == [2, 5, 8]
    assert all(s.sequence is states[0].sequence for s in states)  # shared, not copied
    assert states[1].state_token_ids.base is states[0].sequence


def test_build_sequences_shares_states_of_a_trajectory_or_lays_each_action_out_alone():
    from swirl.training.states import trajectory_states
    from swirl.training.trees import ActionSample, build_sequences

    t = trajectory_states(_trajectory("t", [1, 2], [([3], [4]), ([5], [6]), ([9], [])]))
    u = trajectory_states(_trajectory("u", [5], [([6], [])]))
    samples = [
        ActionSample.single(t[0], [7], 1.0, 0, [-0.5]),
        ActionSample.single(t[2], [8, 9], 1.0, 1, [-1.0, -2.0]),
        ActionSample.single(u[0], [6], 1.0, 2, [-3.0]),
        ActionSample.single(t[2], [], 1.0, 1, []),  # nothing to score: skipped
    ]
    shared = build_sequences(samples)
    assert [s.context.tolist() for s in shared.sequences] == [[1, 2, 3, 4, 5, 6, 9], [5, 6]]
    assert [(b.offset, b.tokens.tolist()) for b in shared.sequences[0].branches] == [
        (2, [7]),
        (6, [8, 9]),
    ]
    assert shared.branch_sample.tolist() == [0, 1, 2]
    assert shared.behavior_logp.tolist() == [-0.5, -1.0, -2.0, -3.0]  # target order
    naive = build_sequences(samples, share=False)
    assert [s.context.tolist() for s in naive.sequences] == [[1, 2], [1, 2, 3, 4, 5, 6], [5]]
    assert [s.branches[0].offset for s in naive.sequences] == [2, 6, 1]
    unknown = [*samples[:2], ActionSample.single(u[0], [6], 1.0, 2)]
    assert build_sequences(unknown).behavior_logp is None  # one sampler gave no log-probs


def test_build_sequences_splits_a_trajectory_into_trees_that_fit_a_row():
    from swirl.packing import pack
    from swirl.training.states import trajectory_states
    from swirl.training.trees import ActionSample, build_sequences

    t = trajectory_states(_trajectory("t", [1, 2], [([3], [4]), ([5], [6]), ([9], [])]))
    samples = [ActionSample.single(t[2], [7, 8, 9], 1.0, g) for g in range(3)]
    samples.append(ActionSample.single(t[0], [5], 1.0, 3))
    trees = build_sequences(samples, max_tokens=12)  # 6 + 3 + 3 fits, a third branch does not
    assert [len(s.branches) for s in trees.sequences] == [2, 2]
    assert trees.branch_sample.tolist() == [0, 1, 2, 3]
    pack(trees.sequences, 12)  # every tree fits its row
    with pytest.raises(ValueError, match="does not fit in a row of 8 tokens"):
        build_sequences(samples, max_tokens=8)
    assert not samples[0].fits(8) and samples[3].fits(8)


def test_informative_groups_are_the_groups_whose_rewards_differ() -> None:
    from swirl.training.advantages import informative_groups

    rewards = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.5, 0.5])
    groups = torch.tensor([7, 7, 3, 3, 9, 9])
    got = informative_groups(rewards, groups, baseline="group_mean")
    assert got.tolist() == [False, False, True, True, False, False]
    assert informative_groups(rewards, groups, baseline="rloo").tolist() == got.tolist()
    assert informative_groups(rewards, groups, baseline="none").all()
    assert informative_groups(rewards, groups, baseline="batch_mean").all()
    same = torch.ones(4)
    assert not informative_groups(same, torch.arange(4), baseline="batch_mean").any()
    # batch_mean over ranks: this rank's rewards are equal, another rank's differ from them
    other_rank = {"max": 1.0, "neg_min": -0.0}
    merged = informative_groups(
        same,
        torch.arange(4),
        baseline="batch_mean",
        all_reduce_max=lambda v: [max(v[0], other_rank["max"]), max(v[1], other_rank["neg_min"])],
    )
    assert merged.all()


def test_batch_mean_and_std_over_ranks_match_one_process() -> None:
    """Two ranks' batch-level baselines, with their sums all-reduced, equal one process's."""
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0])
    groups = torch.arange(7)
    shares = (slice(0, 2), slice(2, 7))  # unequal ranks: the means differ per rank

    def all_reduce(values: list[float]) -> list[float]:
        per_rank = [
            [float(rewards[s].sum()), float(rewards[s].square().sum()), float(rewards[s].numel())]
            for s in shares
        ]
        assert values in per_rank  # called with this rank's moments
        return [sum(column) for column in zip(*per_rank, strict=True)]

    for scale in (False, True):
        one = group_advantages(rewards, groups, baseline="batch_mean", scale_by_std=scale)
        ranks = [
            group_advantages(
                rewards[s],
                groups[s],
                baseline="batch_mean",
                scale_by_std=scale,
                all_reduce=all_reduce,
            )
            for s in shares
        ]
        torch.testing.assert_close(torch.cat(ranks), one)


@pytest.mark.parametrize(
    "mode,baseline,samples,message",
    [
        ("sft", "batch_mean", 1, "SFT zero advantages"),
        ("offline", "group_mean", 1, "each recorded state is a group of one"),
        ("offline", "rloo", 1, "each recorded state is a group of one"),
        ("online", None, 1, "needs samples_per_state >= 2"),
        ("online", "rloo", 1, "needs samples_per_state >= 2"),
        ("outcome", None, 1, "needs samples_per_state >= 2"),
    ],
)
def test_degenerate_baselines_are_refused_with_what_to_use(mode, baseline, samples, message):
    from swirl.training.config import load_config

    with pytest.raises(ValueError, match=message):
        load_config(
            None,
            trajectories="t.jsonl",
            out="o",
            mode=mode,
            baseline=baseline,
            samples_per_state=samples,
        )
    # the learning setups are accepted
    load_config(None, trajectories="t", out="o", mode="online", samples_per_state=2)
    load_config(
        None, trajectories="t", out="o", mode="online", samples_per_state=1, baseline="none"
    )
    load_config(None, trajectories="t", out="o", mode="offline")


def test_online_refuses_greedy_sampling() -> None:
    from swirl.training.config import load_config

    for temperature in (0.0, -1.0):
        with pytest.raises(ValueError, match=r"temperature.*must be > 0 in online mode"):
            load_config(None, trajectories="t", out="o", temperature=temperature)
    load_config(None, trajectories="t", out="o", mode="sft", temperature=0.0)


@pytest.mark.parametrize(
    "options,message",
    [
        ({"top_p": 0.9}, "'top_p' must be 1 in online mode"),
        ({"mode": "outcome", "top_p": 0.9}, "'top_p' must be 1 in outcome mode"),
        ({"mode": "offline", "kl_coef": 0.1}, "'kl_coef' must be 0 in offline mode"),
        ({"mode": "sft", "kl_coef": 0.1}, "'kl_coef' must be 0 in sft mode"),
        ({"kl_in_reward": True}, "'kl_in_reward' needs a sampled mode .* and kl_coef > 0"),
        ({"mode": "sft", "tis_cap": 2.0}, "'tis_cap' is for sampled modes"),
        ({"drop_zero_variance_groups": True, "baseline": "none"}, "needs a baseline"),
        ({"clip_high": 0.3}, "'clip_high' needs clip_low"),
        ({"clip_low": 1.2}, r"'clip_low' must be in \(0, 1\)"),
        ({"kl_clamp": 0.0}, "'kl_clamp' must be > 0"),
        ({"entropy_coef": -0.1}, "'entropy_coef' must be >= 0"),
    ],
)
def test_objective_options_that_cannot_mean_what_they_say_are_refused(options, message):
    from swirl.training.config import load_config

    with pytest.raises(ValueError, match=message):
        load_config(None, trajectories="t", out="o", **options)


def test_objective_options_that_mean_what_they_say_are_accepted():
    from swirl.training.config import load_config

    config = load_config(
        None,
        trajectories="t",
        out="o",
        kl_coef=0.05,
        kl_in_reward=True,
        kl_estimator="k2",
        clip_low=0.2,
        clip_high=0.28,
        entropy_coef=0.01,
        tis_cap=2.0,
        drop_zero_variance_groups=True,
        normalize="sequence",
    )
    assert config.clip_high == 0.28 and config.normalize == "sequence"
    load_config(None, trajectories="t", out="o", mode="sft", top_p=0.9)  # recorded: no sampling
