"""``swirl.ops.policy_loss`` against the same formulas written out on the reference log-probs."""

from __future__ import annotations

import pytest
import torch
from ops_cases import make_case, torch_single_thread  # noqa: F401 (autouse fixture)

from swirl.ops import normalization_weights, policy_loss, reduce_targets
from swirl.ops.reference import target_logprobs_reference

M = 37


@pytest.fixture
def case():
    return make_case(50, 72, 1000, M, seed=21)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _loss_and_grads(case, advantages, impl, **options):
    hidden = case.hidden.clone().requires_grad_()
    weight = case.weight.clone().requires_grad_()
    loss, stats = policy_loss(
        hidden, weight, case.rows, case.targets, advantages, impl=impl, **options
    )
    loss.backward()
    return loss.detach(), stats, hidden.grad, weight.grad


def _expected(case, per_target_fn, reduce):
    """Loss value and gradients of ``reduce(per_target_fn(logp))`` on the reference log-probs."""
    hidden = case.hidden.clone().requires_grad_()
    weight = case.weight.clone().requires_grad_()
    logp = target_logprobs_reference(hidden, weight, case.rows, case.targets)
    loss = reduce(per_target_fn(logp))
    loss.backward()
    return loss.detach(), logp.detach(), hidden.grad, weight.grad


def _assert_matches(got, want):
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got[2], want[2], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(got[3], want[3], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("impl", ["reference", "chunked"])
def test_reinforce_token_mean(case, impl):
    advantages = torch.randn(M, generator=_generator(1))
    got = _loss_and_grads(case, advantages, impl)
    want = _expected(case, lambda logp: -advantages * logp, torch.mean)
    _assert_matches(got, want)
    assert got[1]["logp_mean"] == pytest.approx(want[1].mean().item(), rel=1e-5)
    assert set(got[1]) == {"logp_mean"}


@pytest.mark.parametrize("impl", ["reference", "chunked"])
@pytest.mark.parametrize("low,high", [(0.2, None), (0.2, 0.28)], ids=["symmetric", "clip-higher"])
def test_ppo_clip_is_active_and_cuts_gradients(case, impl, low, high):
    advantages = torch.randn(M, generator=_generator(2))
    logp_now = target_logprobs_reference(case.hidden, case.weight, case.rows, case.targets)
    old_logp = logp_now + 0.5 * torch.randn(M, generator=_generator(3))
    top = low if high is None else high
    got = _loss_and_grads(case, advantages, impl, old_logp=old_logp, clip_low=low, clip_high=high)

    def clipped(logp):
        ratio = torch.exp(logp - old_logp)
        return -torch.minimum(ratio * advantages, ratio.clamp(1 - low, 1 + top) * advantages)

    want = _expected(case, clipped, torch.mean)
    _assert_matches(got, want)
    ratio = torch.exp(logp_now - old_logp)
    above, below = (ratio > 1 + top) & (advantages > 0), (ratio < 1 - low) & (advantages < 0)
    assert above.sum() > 0 and below.sum() > 0 and (above | below).sum() < M
    assert got[1]["clip_frac"] == pytest.approx((above | below).float().mean().item())
    assert got[1]["clip_frac_pos"] == pytest.approx(
        above.sum().item() / (advantages > 0).sum().item()
    )
    assert got[1]["clip_frac_neg"] == pytest.approx(
        below.sum().item() / (advantages < 0).sum().item()
    )
    assert got[1]["ratio_mean"] == pytest.approx(ratio.mean().item(), rel=1e-5)


def test_ratio_without_clip_on_policy_equals_reinforce(case):
    # with old_logp = the current log-probs the ratio is 1 and its gradient is REINFORCE's
    advantages = torch.randn(M, generator=_generator(4))
    old_logp = target_logprobs_reference(case.hidden, case.weight, case.rows, case.targets)
    got = _loss_and_grads(case, advantages, "chunked", old_logp=old_logp)
    want = _expected(case, lambda logp: -advantages * logp, torch.mean)
    torch.testing.assert_close(got[2], want[2], rtol=1e-4, atol=1e-6)
    assert got[1]["ratio_mean"] == pytest.approx(1.0, abs=1e-5)


ESTIMATORS = {
    "k1": lambda d: d,
    "k2": lambda d: 0.5 * d.square(),
    "k3": lambda d: torch.exp(-d) + d - 1,
}


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
@pytest.mark.parametrize("kl_coef", [0.0, 0.3])
def test_kl_statistic_and_penalty(case, kl_coef, estimator):
    advantages = torch.randn(M, generator=_generator(5))
    logp_now = target_logprobs_reference(case.hidden, case.weight, case.rows, case.targets)
    ref_logp = logp_now + 0.4 * torch.randn(M, generator=_generator(6))
    got = _loss_and_grads(
        case, advantages, "chunked", ref_logp=ref_logp, kl_coef=kl_coef, kl_estimator=estimator
    )

    def penalised(logp):
        return -advantages * logp + kl_coef * ESTIMATORS[estimator](logp - ref_logp)

    want = _expected(case, penalised, torch.mean)
    _assert_matches(got, want)
    d = logp_now - ref_logp
    kl = torch.exp(-d) + d - 1  # the logged statistic is k3's value, whatever the estimator
    assert (kl >= 0).all()
    assert got[1]["kl"] == pytest.approx(kl.mean().item(), rel=1e-5)


def test_kl_clamp_bounds_the_log_ratio_and_stops_its_gradient(case):
    advantages = torch.zeros(M)
    logp_now = target_logprobs_reference(case.hidden, case.weight, case.rows, case.targets)
    ref_logp = logp_now + torch.linspace(-3.1, 2.9, M)  # |d| up to 3.1, never exactly 1
    options = dict(ref_logp=ref_logp, kl_coef=1.0, kl_estimator="k3", kl_clamp=1.0)
    got = _loss_and_grads(case, advantages, "chunked", **options)
    want = _expected(
        case, lambda logp: ESTIMATORS["k3"]((logp - ref_logp).clamp(-1.0, 1.0)), torch.mean
    )
    _assert_matches(got, want)
    assert got[0] < _loss_and_grads(case, advantages, "chunked", **{**options, "kl_clamp": None})[0]


def test_entropy_bonus_is_the_mean_entropy_gradient(case):
    advantages = torch.randn(M, generator=_generator(10))
    coef = 0.7
    got = _loss_and_grads(case, advantages, "chunked", entropy_coef=coef)
    hidden = case.hidden.clone().requires_grad_()
    weight = case.weight.clone().requires_grad_()
    logits = hidden[case.rows] @ weight.T
    logp_all = logits.log_softmax(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    logp = logp_all.gather(1, case.targets[:, None]).squeeze(1)
    loss = (-advantages * logp - coef * entropy).mean()
    loss.backward()
    _assert_matches(got, (loss.detach(), None, hidden.grad, weight.grad))
    assert got[1]["entropy"] == pytest.approx(entropy.mean().item(), rel=1e-5)


def test_truncated_importance_sampling_weights_and_gap(case):
    advantages = torch.randn(M, generator=_generator(11))
    logp_now = target_logprobs_reference(case.hidden, case.weight, case.rows, case.targets)
    behavior = logp_now + 0.6 * torch.randn(M, generator=_generator(12))
    cap = 1.5
    got = _loss_and_grads(case, advantages, "chunked", behavior_logp=behavior, tis_cap=cap)
    weights = torch.exp(logp_now - behavior)
    want = _expected(case, lambda logp: -advantages * logp * weights.clamp(max=cap), torch.mean)
    _assert_matches(got, want)
    assert 0 < (weights > cap).sum() < M
    assert got[1]["tis_capped_frac"] == pytest.approx((weights > cap).float().mean().item())
    gap = behavior - logp_now
    assert got[1]["sampler_gap"] == pytest.approx(gap.mean().item(), rel=1e-4, abs=1e-6)
    assert got[1]["sampler_abs_gap"] == pytest.approx(gap.abs().mean().item(), rel=1e-4)
    # without a cap the sampler log-probs only feed the statistics
    plain = _loss_and_grads(case, advantages, "chunked", behavior_logp=behavior)
    _assert_matches(plain, _expected(case, lambda logp: -advantages * logp, torch.mean))


def test_normalize_modes(case):
    advantages = torch.randn(M, generator=_generator(7))
    # sequence ids are arbitrary labels: three sequences of 5, 12 and 20 targets
    sequence = torch.tensor([70] * 5 + [-3] * 12 + [8] * 20)
    per_target = lambda logp: -advantages * logp  # noqa: E731

    def sequence_mean(values):
        return torch.stack([values[sequence == b].mean() for b in (70, -3, 8)]).mean()

    for normalize, reduce in (
        ("token", torch.mean),
        ("sum", torch.sum),
        ("sequence", sequence_mean),
    ):
        got = _loss_and_grads(case, advantages, "chunked", normalize=normalize, sequence=sequence)
        _assert_matches(got, _expected(case, per_target, reduce))


def test_reduce_targets_sequence_weights_each_sequence_equally():
    per_target = torch.tensor([1.0, 1.0, 1.0, 4.0])
    sequence = torch.tensor([0, 0, 0, 1])
    assert reduce_targets(per_target, "sequence", sequence).item() == pytest.approx(2.5)
    assert reduce_targets(per_target, "token", None).item() == pytest.approx(1.75)
    assert reduce_targets(per_target, "sum", None).item() == pytest.approx(7.0)


def test_split_batch_with_whole_batch_weights_sums_to_the_whole_loss(case):
    """Targets split in two parts (micro-batches or ranks): each part's ``target_scale`` from the
    whole batch's totals, reduced with "sum", adds up to the whole batch's loss and gradient."""
    advantages = torch.randn(M, generator=_generator(9))
    sequence = torch.tensor([4] * 10 + [1] * 9 + [6] * 18)  # the cut at 19 keeps them whole
    parts = (slice(0, 19), slice(19, M))
    for normalize in ("token", "sequence", "sum"):
        want = _loss_and_grads(case, advantages, "chunked", normalize=normalize, sequence=sequence)
        hidden = case.hidden.clone().requires_grad_()
        weight = case.weight.clone().requires_grad_()
        total = torch.zeros(())
        for part in parts:
            scale = normalization_weights(
                normalize,
                sequence[part],
                sequence[part].numel(),
                total_targets=M,
                total_sequences=3,
            )
            loss, _ = policy_loss(
                hidden,
                weight,
                case.rows[part],
                case.targets[part],
                advantages[part],
                normalize="sum",
                target_scale=scale,
            )
            loss.backward()
            total = total + loss.detach()
        _assert_matches((total, None, hidden.grad, weight.grad), want)


@pytest.mark.parametrize("impl", ["reference", "chunked"])
def test_zero_advantages_give_zero_loss_and_gradient(case, impl):
    loss, _, grad_hidden, grad_weight = _loss_and_grads(case, torch.zeros(M), impl)
    assert loss.item() == 0.0
    assert torch.count_nonzero(grad_hidden) == 0
    assert torch.count_nonzero(grad_weight) == 0


def test_single_target_with_everything_on():
    case = make_case(2, 16, 40, 1, seed=8)
    logp = target_logprobs_reference(case.hidden, case.weight, case.rows, case.targets)
    options = {
        "old_logp": logp + 0.5,
        "ref_logp": logp - 0.1,
        "behavior_logp": logp + 0.2,
        "clip_low": 0.1,
        "clip_high": 0.3,
        "kl_coef": 0.5,
        "kl_estimator": "k2",
        "entropy_coef": 0.1,
        "tis_cap": 2.0,
        "normalize": "sequence",
        "sequence": torch.tensor([3]),
        "softcap": 10.0,
        "temperature": 0.9,
        "return_entropy": True,
    }
    got = _loss_and_grads(case, torch.tensor([-1.0]), "chunked", **options)
    want = _loss_and_grads(case, torch.tensor([-1.0]), "reference", **options)
    _assert_matches(got, want)
    assert set(got[1]) == {
        "logp_mean",
        "ratio_mean",
        "clip_frac",
        "clip_frac_pos",
        "clip_frac_neg",
        "kl",
        "entropy",
        "sampler_gap",
        "sampler_abs_gap",
        "tis_capped_frac",
    }
    assert got[1]["entropy"] == pytest.approx(want[1]["entropy"], rel=1e-5)
    # ratio = exp(-0.5) < 1 - eps with a negative advantage: the clip removes the gradient
    assert got[1]["clip_frac"] == 1.0
