"""The Stage-2 trainer on a tiny random Llama with the real tokenizer and demo-math trajectories.

A custom judge (a deterministic function of the sampled text) stands in for the reference judge in
the online tests so that rewards vary for a model that cannot yet use tags; the real judge is
exercised by the slow end-to-end pipeline test. A random model's samples hold no action tag, which
the scorer rewards 0 without asking the judge (tested in test_training_parts.py), so the tests of
the training mechanics let every sample through to the stand-in judge (``any_action_is_valid``).
"""

from __future__ import annotations

import math
from pathlib import Path

import msgspec
import pytest
import torch
from safetensors.torch import load_file
from trajectory_builders import demo_math_trajectories

from swirl.jsonl import read_jsonl, write_jsonl
from swirl.schema import Judgment, Trajectory
from swirl.training.config import load_config
from swirl.training.metrics_log import read_metrics
from swirl.training.trainer import NonFiniteError, Trainer


class ParityJudge:
    """GOOD when the sum of the last step's token ids is even (deterministic, varied rewards)."""

    name = "parity"

    def judge(self, batch, mode):
        out = []
        for _, trajectory in batch:
            steps = list(trajectory.steps)
            verdict = sum(steps[-1].token_ids) % 2 == 0
            steps[-1] = msgspec.structs.replace(
                steps[-1], process=Judgment(judge=self.name, verdict=verdict)
            )
            out.append(msgspec.structs.replace(trajectory, steps=steps))
        return out


class OutcomeParityJudge:
    """YES when the sum of all the trajectory's action token ids is even."""

    name = "outcome-parity"

    def judge(self, batch, mode):
        assert mode == "outcome"
        return [
            msgspec.structs.replace(
                trajectory,
                outcome=Judgment(
                    judge=self.name,
                    verdict=sum(sum(step.token_ids) for step in trajectory.steps) % 2 == 0,
                ),
            )
            for _, trajectory in batch
        ]


JUDGES = {"online": ParityJudge(), "outcome": OutcomeParityJudge()}


@pytest.fixture
def any_action_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    from swirl.training.rewards import StepScorer

    monkeypatch.setattr(StepScorer, "invalid_reason", lambda self, completion: None)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama (SmolLM2 tokenizer) and labelled demo-math trajectories on disk."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from swirl.model import load_tokenizer

    root = tmp_path_factory.mktemp("trainer")
    tokenizer = load_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(root / "tiny")
    tokenizer.save_pretrained(root / "tiny")

    trajectories = demo_math_trajectories(tokenizer)
    write_jsonl(root / "trajectories.jsonl", trajectories)
    return root


def config(workspace: Path, out: Path, **overrides):
    values = dict(
        trajectories=str(workspace / "trajectories.jsonl"),
        out=str(out),
        model=str(workspace / "tiny"),
        data="demo-math",
        steps=4,
        states_per_step=3,
        samples_per_state=2,
        max_new_tokens=8,
        lr=1e-3,
    )
    values.update(overrides)
    return load_config(None, **values)


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return load_file(checkpoint / "model" / "model.safetensors")


@pytest.mark.parametrize("mode", ["online", "offline", "outcome"])
@pytest.mark.usefixtures("any_action_is_valid")
def test_resume_is_exact(workspace: Path, tmp_path: Path, mode: str) -> None:
    """2 steps, stop, resume 2 more == 4 steps in one go (weights, logged losses)."""
    options = dict(mode=mode, checkpoint_every=2, clip_low=0.2, updates_per_batch=2)
    if mode != "offline":  # recorded actions take no KL
        options["kl_coef"] = 0.05
    judge = JUDGES.get(mode)
    whole = Trainer(
        config(workspace, tmp_path / "a", **options), judge=judge, progress=False
    ).train()
    Trainer(
        config(workspace, tmp_path / "b", **options, steps=2), judge=judge, progress=False
    ).train()
    resumed = Trainer(
        config(workspace, tmp_path / "b", **options), judge=judge, progress=False
    ).train()
    a, b = weights(whole.checkpoint), weights(resumed.checkpoint)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert [m["loss"] for m in whole.metrics] == [m["loss"] for m in resumed.metrics]
    assert [m["step"] for m in read_metrics(tmp_path / "b" / "metrics.jsonl")] == [1, 2, 3, 4]
    assert any(m["loss"] != 0 for m in whole.metrics)  # the rewards varied: something was learned
    initial = weights_of_initial(workspace)
    assert any(not torch.equal(a[k], initial[k]) for k in a)


def weights_of_initial(workspace: Path) -> dict[str, torch.Tensor]:
    return load_file(workspace / "tiny" / "model.safetensors")


@pytest.mark.usefixtures("any_action_is_valid")
def test_online_logs_and_plots(workspace: Path, tmp_path: Path) -> None:
    result = Trainer(
        config(workspace, tmp_path, steps=2, kl_coef=0.1), judge=ParityJudge(), progress=False
    ).train()
    record = result.metrics[-1]
    for key in (
        "loss",
        "reward",
        "advantage_std",
        "kl",
        "entropy",
        "tokens_packed",
        "tokens_naive",
        "tokens_per_s",
        "step_time_s",
    ):
        assert record[key] is not None, key
    assert record["actions"] == 3 * 2
    assert (
        record["tokens_naive"] > record["tokens_packed"]
    )  # states share their trajectory's prefix
    assert 0.0 <= record["reward"] <= 1.0 and record["kl"] >= 0.0
    # The in-process engine keeps the log-prob it drew each token with: the learner's, to float
    # precision, at every step (the sampler copy is refreshed after each update).
    for logged in result.metrics:
        assert logged["sampler_abs_gap"] is not None and logged["sampler_abs_gap"] < 1e-4, logged
    assert (tmp_path / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(result.checkpoint / "model")  # usable as --model


def test_online_finds_questions_drawn_with_another_seed(workspace: Path, tmp_path: Path) -> None:
    """Trajectories of demo questions drawn with --seed 3 are scored against those questions."""
    from swirl.data import load_examples

    seeded = load_examples("demo-math", split="train", limit=4, seed=3)
    original = read_jsonl(workspace / "trajectories.jsonl", Trajectory)
    moved = [
        msgspec.structs.replace(t, example_id=e.id, id=f"{e.id}#0")
        for t, e in zip(original, seeded, strict=True)
    ]
    path = tmp_path / "seed3.jsonl"
    write_jsonl(path, moved)
    base = dict(trajectories=str(path), steps=1, states_per_step=2)
    with pytest.raises(ValueError, match="is not loaded"):
        Trainer(config(workspace, tmp_path / "a", **base), progress=False).train()
    result = Trainer(config(workspace, tmp_path / "b", data_seed=3, **base), progress=False).train()
    assert result.metrics[-1]["unscored"] == 0 and result.metrics[-1]["reward"] is not None


def test_sft_raises_likelihood_of_recorded_actions(workspace: Path, tmp_path: Path) -> None:
    result = Trainer(
        config(workspace, tmp_path, mode="sft", steps=6, states_per_step=8, lr=3e-3), progress=False
    ).train()
    logp = [m["logp_mean"] for m in result.metrics]
    assert logp[-1] > logp[0] + 0.1
    assert all(m["reward"] is None and m["advantage_std"] is None for m in result.metrics)


def test_offline_needs_labels(workspace: Path, tmp_path: Path) -> None:
    unlabelled = tmp_path / "plain.jsonl"
    trajectories = read_jsonl(workspace / "trajectories.jsonl", Trajectory)
    write_jsonl(
        unlabelled,
        [
            msgspec.structs.replace(
                t, steps=[msgspec.structs.replace(s, process=None) for s in t.steps]
            )
            for t in trajectories
        ],
    )
    with pytest.raises(ValueError, match="no step carries a process label"):
        Trainer(
            config(workspace, tmp_path, mode="offline", trajectories=str(unlabelled)),
            progress=False,
        )


def test_non_finite_steps_stop_with_a_checkpoint(workspace: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    broken = tmp_path / "broken"
    model = AutoModelForCausalLM.from_pretrained(workspace / "tiny")
    with torch.no_grad():
        model.model.norm.weight[0] = math.nan  # every hidden state becomes NaN
    model.save_pretrained(broken)
    AutoTokenizer.from_pretrained(workspace / "tiny").save_pretrained(broken)
    trainer = Trainer(
        config(workspace, tmp_path / "out", mode="sft", model=str(broken), max_nonfinite_steps=2),
        progress=False,
    )
    with pytest.raises(NonFiniteError, match="2 steps in a row") as error:
        trainer.train()
    assert "step-000002" in str(error.value)
    assert (tmp_path / "out" / "checkpoints" / "step-000002" / "model").is_dir()
    logged = read_metrics(tmp_path / "out" / "metrics.jsonl")
    assert [m["skipped_updates"] for m in logged] == [1, 1]


def test_config_errors_name_the_field(workspace: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="states_per_step"):
        config(workspace, tmp_path, states_per_step=0)
    toml = tmp_path / "train.toml"
    toml.write_text('[train]\ntrajectories = "x"\nout = "y"\nlr = "fast"\n')
    with pytest.raises(ValueError, match=r"train\.toml: invalid training config: .*\$\.lr"):
        load_config(toml)


DISTRIBUTED_SCRIPT = """
import sys
from swirl.training.config import load_config
from swirl.training.trainer import Trainer
trajectories, model, out, states, mode = sys.argv[1:6]
config = load_config(None, trajectories=trajectories, model=model, out=out, mode=mode, steps=2,
                     states_per_step=int(states), lr=1e-3)
Trainer(config, progress=False).train()
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sft", "offline"])
def test_two_process_fsdp_matches_one_process(workspace: Path, tmp_path: Path, mode: str) -> None:
    """torchrun with 2 CPU processes (gloo, FSDP2), each packing half of the states, reaches the
    weights and the logged losses of one process training on all of them; offline, the
    batch-mean baseline is taken over both ranks' labels, as one process takes it."""
    import os
    import subprocess
    import sys

    script = tmp_path / "train.py"
    script.write_text(DISTRIBUTED_SCRIPT)
    args = [str(workspace / "trajectories.jsonl"), str(workspace / "tiny")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [sys.executable, str(script), *args, str(tmp_path / "one"), "4", mode], check=True, env=env
    )
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    subprocess.run(
        # states_per_step is the total over all ranks: each rank packs 2 of the 4
        [*torchrun, str(script), *args, str(tmp_path / "two"), "4", mode],
        check=True,
        env=env,
        timeout=600,
    )
    one = weights(tmp_path / "one" / "checkpoints" / "step-000002")
    two = weights(tmp_path / "two" / "checkpoints" / "step-000002")
    for key in one:  # AdamW's first step moves a weight by lr = 1e-3 wherever its gradient differs
        torch.testing.assert_close(two[key], one[key], rtol=0, atol=1e-5)
    losses = [
        [m["loss"] for m in read_metrics(tmp_path / run / "metrics.jsonl")]
        for run in ("one", "two")
    ]
    assert losses[1] == pytest.approx(losses[0], abs=1e-5)


@pytest.mark.parametrize(
    "options",
    [
        {"dtype": "bf16"},
        {"gradient_checkpointing": True},
        {"layout": "naive"},
        {"lora": {"rank": 4, "alpha": 8.0}},
    ],
    ids=["bf16-autocast", "gradient-checkpointing", "naive-layout", "lora"],
)
def test_training_options(workspace: Path, tmp_path: Path, options: dict) -> None:
    """Each option trains and resumes; the naive layout packs every action with its own state."""
    base = dict(mode="offline", steps=2, states_per_step=4, checkpoint_every=1, lr=1e-2, **options)
    trainer = Trainer(config(workspace, tmp_path, **base), progress=False)
    checkpointed = any(getattr(m, "gradient_checkpointing", False) for m in trainer.model.modules())
    assert checkpointed == options.get("gradient_checkpointing", False)
    result = trainer.train()
    for record in result.metrics:  # a step whose labels are all equal has no gradient
        assert record["skipped_updates"] == 0
        assert (record["loss"] is None) == bool(record["no_gradient"])
    assert any(
        record["loss"] is not None and math.isfinite(record["loss"]) for record in result.metrics
    )
    record = result.metrics[-1]
    if options.get("layout") == "naive":
        assert record["tokens_naive"] == record["tokens_packed"]
    if "lora" in options:
        adapter = result.checkpoint / "model" / "adapter_model.safetensors"
        assert adapter.is_file() and adapter.stat().st_size < 1_000_000  # only the adapter
        again = Trainer(config(workspace, tmp_path, **{**base, "steps": 3}), progress=False)
        assert again.start_step == 2
        again.train()


@pytest.mark.usefixtures("any_action_is_valid")
def test_loss_scores_sampled_actions_at_the_sampling_temperature(workspace: Path, tmp_path: Path):
    """Online at T = 0.5 the loss's log-probs are those of softmax(logits / 0.5), the distribution
    the sampler drew from (per sampled action, against a plain unpacked forward)."""
    from swirl.training.objective import packed_logprobs
    from swirl.training.trees import build_sequences

    temperature = 0.5
    trainer = Trainer(  # a KL term packs every sample, zero advantages too
        config(workspace, tmp_path, temperature=temperature, steps=1, kl_coef=0.1),
        judge=ParityJudge(),
        progress=False,
    )
    collected = trainer._collect(0)
    packed = trainer._pack(collected)
    got = packed.batch.branch_sum(packed_logprobs(trainer.policy, packed.passes).numpy())
    sequences = build_sequences(collected.scored).sequences
    want = []
    with torch.no_grad():
        for sequence in sequences:
            for branch in sequence.branches:
                ids = [*sequence.context[: branch.offset].tolist(), *branch.tokens.tolist()]
                logits = trainer.model(torch.tensor([ids])).logits[0].float()
                predicting = logits[branch.offset - 1 : len(ids) - 1] / temperature
                logp = predicting.log_softmax(-1).gather(1, torch.tensor(branch.tokens)[:, None])
                want.append(float(logp.sum()))
    assert len(want) == len(collected.scored) > 0
    torch.testing.assert_close(torch.as_tensor(got).float(), torch.tensor(want), rtol=0, atol=1e-4)


@pytest.mark.usefixtures("any_action_is_valid")
def test_online_at_half_temperature_starts_with_kl_0_and_ratio_1_under_dropout(
    workspace: Path, tmp_path: Path
) -> None:
    """Online at T = 0.5, a model with attention dropout 0.1 trained with LoRA dropout 0.1: the
    policy scores its samples as the (eval-mode) sampler and the frozen reference do, at the
    sampling temperature (the reference too), so the first update's ratio is 1 and the initial
    KL is 0."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    noisy = tmp_path / "noisy"
    AutoModelForCausalLM.from_pretrained(workspace / "tiny", attention_dropout=0.1).save_pretrained(
        noisy
    )
    AutoTokenizer.from_pretrained(workspace / "tiny").save_pretrained(noisy)
    options = dict(
        model=str(noisy),
        temperature=0.5,
        kl_coef=0.1,
        updates_per_batch=2,
        clip_low=0.2,
        lora={"rank": 4, "alpha": 8.0, "dropout": 0.1},
        lr=1e-2,
    )
    trainer = Trainer(
        config(workspace, tmp_path / "out", **options), judge=ParityJudge(), progress=False
    )
    assert trainer.reference is not None and trainer.reference.temperature == 0.5
    for step in range(2):  # step 1 runs after LoRA's B moved off 0, so its dropout would matter
        collected = trainer._collect(step)
        updates = trainer._update(collected, trainer._pack(collected)).updates
        first = updates[0]
        assert first.finite and first.targets > 0
        assert first.ratio / first.targets == pytest.approx(1.0, abs=1e-6)
        if step == 0:
            assert first.kl / first.targets == pytest.approx(0.0, abs=1e-7)
        assert updates[1].ratio / updates[1].targets != pytest.approx(1.0, abs=1e-6)


@pytest.mark.usefixtures("any_action_is_valid")
def test_non_finite_reference_logprobs_skip_the_update(workspace: Path, tmp_path: Path) -> None:
    trainer = Trainer(config(workspace, tmp_path, kl_coef=0.1), judge=ParityJudge(), progress=False)
    assert trainer.reference is not None
    with torch.no_grad():
        trainer.reference.model.model.norm.weight[0] = math.nan
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    record = trainer._step(0)
    assert record["skipped_updates"] == 1 and record["loss"] is None
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_offline_refuses_all_good_labels_and_says_what_to_use(workspace: Path, tmp_path: Path):
    all_good = tmp_path / "process-filtered.jsonl"
    good = Judgment(judge="reference", verdict=True)
    write_jsonl(
        all_good,
        [
            msgspec.structs.replace(
                t, steps=[msgspec.structs.replace(s, process=good) for s in t.steps]
            )
            for t in read_jsonl(workspace / "trajectories.jsonl", Trajectory)
        ],
    )
    with pytest.raises(ValueError, match=r"all \d+ labelled steps are GOOD.*--baseline none"):
        Trainer(
            config(workspace, tmp_path / "a", mode="offline", trajectories=str(all_good)),
            progress=False,
        )
    Trainer(
        config(
            workspace, tmp_path / "b", mode="offline", trajectories=str(all_good), baseline="none"
        ),
        progress=False,
    )


def test_a_step_with_only_zero_advantages_warns(
    workspace: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A random model's samples hold no action tag: every reward is 0, so is every advantage."""
    trainer = Trainer(config(workspace, tmp_path, steps=1), judge=ParityJudge(), progress=False)
    with caplog.at_level("WARNING", logger="swirl.training.trainer"):
        record = trainer._step(0)
    assert record["reward"] == 0.0
    assert "step 1: every advantage is 0" in caplog.text


def test_online_turn_budget_defaults_to_the_stage1_one(workspace: Path, tmp_path: Path) -> None:
    budgeted = tmp_path / "budget.jsonl"
    write_jsonl(
        budgeted,
        [
            msgspec.structs.replace(t, metadata={**t.metadata, "max_new_tokens": 40})
            for t in read_jsonl(workspace / "trajectories.jsonl", Trajectory)
        ],
    )
    trainer = Trainer(
        config(workspace, tmp_path / "a", trajectories=str(budgeted), max_new_tokens=None),
        judge=ParityJudge(),
        progress=False,
    )
    assert trainer.config.max_new_tokens == 40
    assert trainer.source.params.max_new_tokens == 40
    # a file from before the budget was recorded: its longest recorded action bounds it
    older = Trainer(
        config(workspace, tmp_path / "b", max_new_tokens=None), judge=ParityJudge(), progress=False
    )
    longest = max(len(s.token_ids) for t in older.trajectories for s in t.steps)
    assert older.config.max_new_tokens == longest


@pytest.mark.usefixtures("any_action_is_valid")
def test_logged_statistics_mean_what_their_names_say(workspace: Path, tmp_path: Path) -> None:
    from swirl.training.metrics_log import METRICS

    options = dict(
        steps=1,
        kl_coef=0.1,
        clip_low=0.2,
        clip_high=0.3,
        updates_per_batch=3,
        baseline="none",
        lr=1e-1,
    )
    trainer = Trainer(config(workspace, tmp_path, **options), judge=ParityJudge(), progress=False)
    collected = trainer._collect(0)
    packed = trainer._pack(collected)
    update = trainer._update(collected, packed)
    updates = update.updates
    record = trainer._record(0, collected, packed, update, started=0.0)
    assert set(record) <= METRICS.keys()
    rewards = collected.rewards
    assert record["reward"] == pytest.approx(float(rewards.mean()))
    # baseline none: advantages are the rewards, so their std is the rewards' std (not their RMS)
    assert record["advantage_std"] == pytest.approx(float(rewards.std(unbiased=False)))
    assert record["loss"] == pytest.approx(sum(u.loss for u in updates) / 3)
    first = updates[0]
    assert record["kl"] == pytest.approx(first.kl / first.targets)
    targets = sum(u.targets for u in updates)
    assert record["ratio_mean"] == pytest.approx(sum(u.ratio for u in updates) / targets)
    assert record["clip_frac"] == pytest.approx(sum(u.clipped for u in updates) / targets)
    assert record["clip_frac"] > 0  # lr 0.1 moves the ratio past the clip
    for sign in ("pos", "neg"):
        total = sum(getattr(u, f"targets_{sign}") for u in updates)
        cut = sum(getattr(u, f"clipped_{sign}") for u in updates)
        assert record[f"clip_frac_{sign}"] == (pytest.approx(cut / total) if total else None)
    groups = collected.groups.unique().numel()
    informative = collected.groups[collected.informative].unique().numel()
    assert record["informative_frac"] == pytest.approx(informative / groups)
    assert record["no_gradient"] == 0 and record["oversize_dropped"] == 0
    offline = Trainer(
        config(workspace, tmp_path / "offline", mode="offline", steps=1), progress=False
    ).train()
    assert set(offline.metrics[-1]) <= METRICS.keys() and "kl" not in offline.metrics[-1]


def test_outcome_mode_trains_every_written_token_with_its_trajectorys_advantage(
    workspace: Path, tmp_path: Path
) -> None:
    """G = 3 rollouts of each of 2 questions: every action token (never a prompt or observation
    token) is a target weighted by its trajectory's advantage against its question's group, and
    a question's rollouts share their prompt in the packed tree."""
    # a KL term packs every rollout (zero advantages too), so every written token is a target
    options = dict(mode="outcome", steps=1, states_per_step=2, samples_per_state=3, kl_coef=0.01)
    trainer = Trainer(config(workspace, tmp_path, **options), judge=OutcomeParityJudge())
    collected = trainer._collect(0)
    assert len(collected.samples) == 2 * 3
    for sample in collected.samples:
        trajectory = sample.state.trajectory
        assert [tokens for _, tokens in sample.actions] == [s.token_ids for s in trajectory.steps]
        assert [state.offset for state, _ in sample.actions] == [
            len(trajectory.prompt_token_ids)
            + sum(len(s.token_ids) + len(s.observation_token_ids) for s in trajectory.steps[:i])
            for i in range(len(trajectory.steps))
        ]
    groups = torch.tensor([s.group for s in collected.scored])
    for group in groups.unique():
        assert collected.advantages[groups == group].sum().abs() < 1e-6  # centred per question
    packed = trainer._pack(collected)
    written = sum(len(t) for s in collected.scored for _, t in s.actions)
    assert packed.batch.num_targets == written
    expected = torch.cat(
        [
            torch.full((sum(len(t) for _, t in s.actions),), float(a))
            for s, a in zip(collected.scored, collected.advantages, strict=True)
        ]
    )
    torch.testing.assert_close(packed.advantages, expected)
    prompt = len(collected.scored[0].state.trajectory.prompt_token_ids)
    assert packed.batch.naive_tokens - packed.batch.packed_tokens >= 2 * 2 * prompt


def one_state_file(workspace: Path, tmp_path: Path) -> Path:
    """The first trajectory cut to its first step: a training set of exactly one state."""
    first = read_jsonl(workspace / "trajectories.jsonl", Trajectory)[0]
    path = tmp_path / "one-state.jsonl"
    write_jsonl(path, [msgspec.structs.replace(first, steps=first.steps[:1])])
    return path


def test_a_state_drawn_twice_in_a_step_gets_independent_samples(
    workspace: Path, tmp_path: Path
) -> None:
    """One state, drawn twice per step: the Trainer tells the sampler which draw is which, so
    the two draws' G samples differ (equal seeds would give equal samples)."""
    trainer = Trainer(
        config(
            workspace,
            tmp_path / "out",
            trajectories=str(one_state_file(workspace, tmp_path)),
            states_per_step=2,
            samples_per_state=3,
            max_new_tokens=12,
        ),
        judge=ParityJudge(),
        progress=False,
    )
    samples = trainer._collect(0).samples
    draws = [[s.actions[0][1] for s in samples if s.group == draw] for draw in (0, 1)]
    assert len(draws[0]) == len(draws[1]) == 3
    assert samples[0].state is samples[3].state  # the same state
    assert draws[0] != draws[1]


def test_states_per_step_is_the_total_over_ranks(workspace: Path, tmp_path: Path) -> None:
    from swirl.training.distributed import DistInfo

    trainer = Trainer(config(workspace, tmp_path, mode="sft", states_per_step=5), progress=False)
    trainer.dist = DistInfo(rank=1, world_size=2)
    states, _ = trainer._rank_states()
    assert len(states) == 2 and trainer.stream.position == 5  # rank 0 takes 3, rank 1 takes 2


class ConstantJudge:
    """Every step GOOD: every group's rewards are equal."""

    name = "constant"

    def judge(self, batch, mode):
        return [
            msgspec.structs.replace(
                trajectory,
                steps=[
                    *trajectory.steps[:-1],
                    msgspec.structs.replace(
                        trajectory.steps[-1], process=Judgment(judge=self.name, verdict=True)
                    ),
                ],
            )
            for _, trajectory in batch
        ]


@pytest.mark.usefixtures("any_action_is_valid")
@pytest.mark.parametrize(
    "options",
    [{}, {"kl_in_reward": True, "kl_coef": 0.1}],
    ids=["nothing-packed", "kl-in-reward-at-the-reference"],
)
def test_a_step_without_gradient_does_not_step_the_optimizer(
    workspace: Path, tmp_path: Path, options: dict
):
    """Equal rewards in every group, so every advantage is 0; with kl_in_reward at the first
    step the policy is the reference, so the folded penalty is 0 too (the samples are packed to
    compute it). AdamW must not run: its weight decay alone would move every weight."""
    trainer = Trainer(
        config(workspace, tmp_path, steps=1, weight_decay=0.5, lr=1e-2, **options),
        judge=ConstantJudge(),
        progress=False,
    )
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    record = trainer._step(0)
    assert record["no_gradient"] == 1 and record["loss"] is None
    assert record["informative_frac"] == 0.0
    assert (record["tokens_packed"] > 0) == bool(options)
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not trainer.optimizer.state  # AdamW never stepped


@pytest.mark.usefixtures("any_action_is_valid")
def test_zero_advantage_samples_count_in_the_mean_without_being_packed(
    workspace: Path, tmp_path: Path
) -> None:
    """Without a KL term a zero-advantage sample changes nothing but the denominator: leaving it
    out of the packed batch (as the trainer does) gives the gradient of packing it (compared
    before AdamW, which would magnify rounding in near-zero entries)."""
    options = dict(steps=1, states_per_step=4, samples_per_state=2, lr=1e-2)
    runs = {}
    for name, everything in (("skipped", False), ("packed", True)):
        trainer = Trainer(
            config(workspace, tmp_path / name, **options), judge=ParityJudge(), progress=False
        )
        if everything:  # the packing of a loss with a KL term, with the term itself off
            type(trainer)._loss_has_kl_term = property(lambda self: True)
        try:
            collected = trainer._collect(0)
            packed = trainer._pack(collected)
            trainer._update(collected, packed)
        finally:
            type(trainer)._loss_has_kl_term = Trainer.__dict__["_loss_has_kl_term"]
        gradients = {k: p.grad.clone() for k, p in trainer.model.named_parameters()}
        runs[name] = (packed, gradients)
    skipped, full = runs["skipped"][0], runs["packed"][0]
    assert (collected.advantages == 0).any() and (collected.advantages != 0).any()
    assert skipped.batch.num_targets < full.batch.num_targets
    for key, value in runs["packed"][1].items():
        assert value.abs().max() > 0, key
        torch.testing.assert_close(runs["skipped"][1][key], value, rtol=1e-4, atol=1e-7)


@pytest.mark.usefixtures("any_action_is_valid")
def test_dropping_zero_variance_groups_takes_them_out_of_the_averages(
    workspace: Path, tmp_path: Path
) -> None:
    options = dict(steps=1, states_per_step=4, samples_per_state=2)
    plain = Trainer(config(workspace, tmp_path / "a", **options), judge=ParityJudge())
    dropping = Trainer(
        config(workspace, tmp_path / "b", drop_zero_variance_groups=True, **options),
        judge=ParityJudge(),
    )
    kept, dropped = plain._pack(plain._collect(0)), dropping._pack(c := dropping._collect(0))
    informative = c.informative
    assert informative.any() and not informative.all()  # the parity rewards split some groups
    assert kept.counted == list(range(len(c.scored)))
    assert dropped.counted == informative.nonzero().flatten().tolist()
    # token mean: the same targets, each weighing 1 / (tokens of the counted samples)
    tokens = [s.num_tokens for s in c.scored]
    assert kept.scale[0].item() == pytest.approx(1 / sum(tokens))
    assert dropped.scale[0].item() == pytest.approx(1 / sum(tokens[i] for i in dropped.counted))


def test_sequence_normalisation_averages_each_outcome_trajectory_once(
    workspace: Path, tmp_path: Path
) -> None:
    """Outcome mode, normalize = sequence: a whole trajectory (all its turns) is one sequence,
    so each trajectory's targets weigh 1 / (its tokens x trajectories) together."""
    from swirl.training.states import trajectory_states
    from swirl.training.trainer import Collected
    from swirl.training.trees import ActionSample

    options = dict(mode="outcome", steps=1, states_per_step=2, samples_per_state=2, kl_coef=0.01)
    trainer = Trainer(
        config(workspace, tmp_path, normalize="sequence", **options), judge=OutcomeParityJudge()
    )
    rollouts = read_jsonl(workspace / "trajectories.jsonl", Trajectory)  # several turns each
    scored = [
        ActionSample(
            tuple((s, list(s.action_token_ids)) for s in trajectory_states(t)), float(i % 2), i // 2
        )
        for i, t in enumerate(rollouts)
    ]
    rewards = torch.tensor([s.reward for s in scored])
    groups = torch.tensor([s.group for s in scored])
    collected = Collected(
        [], scored, scored, rewards, groups, torch.ones(4, dtype=torch.bool), rewards - 0.5, 0, 0.0
    )
    packed = trainer._pack(collected)
    per_trajectory = torch.zeros(len(scored)).index_add_(0, packed.sample, packed.scale)
    torch.testing.assert_close(per_trajectory, torch.full((4,), 1 / 4))
    assert all(len(s.actions) > 2 for s in scored)


@pytest.mark.usefixtures("any_action_is_valid")
def test_kl_in_reward_folds_the_k1_penalty_into_the_advantages(
    workspace: Path, tmp_path: Path
) -> None:
    from swirl.training.objective import packed_logprobs

    options = dict(steps=1, states_per_step=3, samples_per_state=2, kl_coef=0.5, lr=1e-2)
    trainer = Trainer(
        config(workspace, tmp_path, kl_in_reward=True, baseline="none", **options),
        judge=ParityJudge(),
    )
    with torch.no_grad():  # move the policy off the reference, so the penalty is not 0
        for parameter in trainer.model.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    collected = trainer._collect(0)
    packed = trainer._pack(collected)
    assert len(packed.counted) == len(collected.scored)  # kl_in_reward packs every sample
    policy = packed_logprobs(trainer.policy, packed.passes)
    reference = packed_logprobs(trainer.reference, packed.passes)
    update = trainer._update(collected, packed)
    k1 = torch.zeros(len(collected.scored)).index_add_(0, packed.sample, policy - reference)
    torch.testing.assert_close(update.advantages, collected.rewards - 0.5 * k1, atol=1e-5, rtol=0)
    assert update.updates and update.updates[0].finite


def test_oversize_samples_are_dropped_and_counted(workspace: Path, tmp_path: Path) -> None:
    trajectories = read_jsonl(workspace / "trajectories.jsonl", Trajectory)
    longest = max(
        len(t.prompt_token_ids)
        + sum(len(s.token_ids) + len(s.observation_token_ids) for s in t.steps)
        for t in trajectories
    )
    trainer = Trainer(
        config(
            workspace,
            tmp_path,
            mode="offline",
            steps=2,
            states_per_step=8,
            tokens_per_micro_batch=longest // 2,
        ),
        progress=False,
    )
    result = trainer.train()
    assert sum(m["oversize_dropped"] for m in result.metrics) > 0
    assert all(m["skipped_updates"] == 0 for m in result.metrics)


class StepParityJudge:
    """Process labels of every step: GOOD when the sum of its token ids is even."""

    name = "step-parity"

    def judge(self, batch, mode):
        assert mode == "process"
        return [
            msgspec.structs.replace(
                trajectory,
                steps=[
                    msgspec.structs.replace(
                        s, process=Judgment(judge=self.name, verdict=sum(s.token_ids) % 2 == 0)
                    )
                    for s in trajectory.steps
                ],
            )
            for _, trajectory in batch
        ]


def test_trajectory_process_mode_rewards_each_rollout_by_its_mean_process_label(
    workspace: Path, tmp_path: Path
) -> None:
    """The 2 x 2's whole-trajectory arm with process rewards: G rollouts per question, each
    rewarded by the fraction of its steps judged GOOD, every written token trained with it."""
    options = dict(
        mode="trajectory-process", steps=1, states_per_step=2, samples_per_state=3, kl_coef=0.01
    )
    trainer = Trainer(config(workspace, tmp_path, **options), judge=StepParityJudge())
    collected = trainer._collect(0)
    assert len(collected.samples) == 2 * 3
    for sample in collected.samples:
        steps = sample.state.trajectory.steps
        labels = [sum(s.token_ids) % 2 == 0 for s in steps]
        assert sample.reward == pytest.approx(sum(labels) / len(labels))
    packed = trainer._pack(collected)
    assert packed.batch.num_targets == sum(s.num_tokens for s in collected.scored)
    record = trainer._record(0, collected, packed, trainer._update(collected, packed), 0.0)
    assert record["reward"] == pytest.approx(float(collected.rewards.mean()))


class RecordingOutcomeJudge(OutcomeParityJudge):
    """OutcomeParityJudge that keeps every trajectory it judged."""

    def __init__(self) -> None:
        self.seen: list[Trajectory] = []

    def judge(self, batch, mode):
        labelled = super().judge(batch, mode)
        self.seen += labelled
        return labelled


def test_stepwise_outcome_mode_rewards_each_sampled_step_by_its_completions_outcome(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 2 x 2's step-wise arm with outcome rewards: each action sampled at a state is
    completed from that state and rewarded by the completed trajectory's outcome; only the
    sampled action is trained."""
    from swirl.training.completions import CompletedOutcomeScorer

    monkeypatch.setattr(CompletedOutcomeScorer, "invalid_reason", lambda self, completion: None)
    judge = RecordingOutcomeJudge()
    options = dict(
        mode="stepwise-outcome", steps=1, states_per_step=2, samples_per_state=3, kl_coef=0.01
    )
    trainer = Trainer(config(workspace, tmp_path, **options), judge=judge)
    collected = trainer._collect(0)
    assert len(collected.samples) == 2 * 3 and len(judge.seen) == 6
    completed = {t.id.rpartition(">")[2]: t for t in judge.seen}
    for index, sample in enumerate(collected.samples):
        trajectory = completed[f"0.{index}"]
        state = sample.state
        assert trajectory.steps[: state.step_index] == state.trajectory.steps[: state.step_index]
        assert trajectory.steps[state.step_index].token_ids == sample.actions[0][1]
        assert sample.reward == float(trajectory.outcome.verdict)
    packed = trainer._pack(collected)
    assert packed.batch.num_targets == sum(len(s.actions[0][1]) for s in collected.scored)
