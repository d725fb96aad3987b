"""Which divergence each KL option's gradient follows, computed exactly on a small categorical.

The policy is ``softmax(theta)`` over 6 tokens (one hidden row ``[1]`` and an LM head ``theta``
of width 1, so the logits are ``theta``), the reference ``softmax(phi)``. The expected gradient
of a per-token loss term over ``a ~ policy`` is the exact sum over the 6 tokens, each weighted by
its probability (the weight itself is not differentiated: the token was sampled).
"""

from __future__ import annotations

import pytest
import torch

from swirl.ops import policy_loss
from swirl.training.advantages import penalised_rewards

THETA = torch.tensor([0.3, -1.2, 2.0, 0.5, -0.4, 1.1], dtype=torch.float64)
PHI = torch.tensor([-0.5, 0.8, 1.0, 0.0, 0.7, -1.5], dtype=torch.float64)
VOCAB = THETA.numel()


def expected_gradient(per_token_loss) -> torch.Tensor:
    """``sum_a pi(a) * d/dtheta per_token_loss(theta, a)``, the gradient a sampled estimate has
    in expectation."""
    total = torch.zeros(VOCAB, dtype=torch.float64)
    probabilities = THETA.softmax(0)
    for token in range(VOCAB):
        weight = THETA.clone().requires_grad_()
        loss = per_token_loss(weight, token)
        (grad,) = torch.autograd.grad(loss, weight)
        total += probabilities[token] * grad
    return total


def divergence_gradient(forward: bool) -> torch.Tensor:
    """Exact gradient of KL(policy || ref) (``forward``) or KL(ref || policy) w.r.t. theta."""
    theta = THETA.clone().requires_grad_()
    log_p, log_r = theta.log_softmax(0), PHI.log_softmax(0)
    if forward:
        divergence = (log_p.exp() * (log_p - log_r)).sum()
    else:
        divergence = (log_r.exp() * (log_r - log_p)).sum()
    (grad,) = torch.autograd.grad(divergence, theta)
    return grad


def kl_term(estimator: str):
    """The loss term ``policy_loss`` adds for one sampled token: the KL penalty alone."""
    log_r = PHI.log_softmax(0)

    def loss(weight: torch.Tensor, token: int) -> torch.Tensor:
        value, _ = policy_loss(
            torch.ones(1, 1, dtype=torch.float64),
            weight[:, None],
            torch.tensor([0]),
            torch.tensor([token]),
            torch.zeros(1, dtype=torch.float64),
            ref_logp=log_r[token : token + 1],
            kl_coef=1.0,
            kl_estimator=estimator,
            impl="reference",
        )
        return value

    return loss


def test_k2_follows_kl_policy_to_reference_and_k3_the_reverse() -> None:
    forward, reverse = divergence_gradient(True), divergence_gradient(False)
    assert (forward - reverse).abs().max() > 0.05  # the two divergences pull differently here
    torch.testing.assert_close(expected_gradient(kl_term("k2")), forward, rtol=0, atol=1e-12)
    torch.testing.assert_close(expected_gradient(kl_term("k3")), reverse, rtol=0, atol=1e-12)
    assert (expected_gradient(kl_term("k3")) - forward).abs().max() > 0.05
    # k1 as a loss term: its expected gradient is E[grad log p] = 0
    torch.testing.assert_close(
        expected_gradient(kl_term("k1")),
        torch.zeros(VOCAB, dtype=torch.float64),
        atol=1e-12,
        rtol=0,
    )


def test_kl_in_reward_is_the_k1_penalty_and_follows_kl_policy_to_reference() -> None:
    coef = 0.3
    log_r = PHI.log_softmax(0)
    log_p = THETA.log_softmax(0)
    rewards = torch.tensor([1.0, 0.0, 1.0])
    # three sampled actions of 2, 1 and 3 tokens
    owner = torch.tensor([0, 0, 1, 2, 2, 2])
    tokens = torch.tensor([2, 0, 5, 1, 1, 3])
    folded = penalised_rewards(rewards, owner, log_p[tokens].float(), log_r[tokens].float(), coef)
    k1 = (log_p[tokens] - log_r[tokens]).float()
    want = rewards - coef * torch.zeros(3).index_add_(0, owner, k1)
    torch.testing.assert_close(folded, want, rtol=0, atol=1e-6)

    def reinforce_with_penalty(weight: torch.Tensor, token: int) -> torch.Tensor:
        """One sampled token whose reward is 0 minus the k1 penalty (no baseline)."""
        log_policy = weight.log_softmax(0)
        penalty = penalised_rewards(
            torch.zeros(1),
            torch.zeros(1, dtype=torch.long),
            log_policy[token : token + 1].detach().float(),
            log_r[token : token + 1].float(),
            coef,
        ).double()
        value, _ = policy_loss(
            torch.ones(1, 1, dtype=torch.float64),
            weight[:, None],
            torch.tensor([0]),
            torch.tensor([token]),
            penalty,
            impl="reference",
        )
        return value

    torch.testing.assert_close(
        expected_gradient(reinforce_with_penalty),
        coef * divergence_gradient(True),
        rtol=0,
        atol=1e-6,  # the penalty passes through float32
    )


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
def test_estimators_are_zero_at_the_reference(estimator: str) -> None:
    """At policy == reference every estimator's value and expected gradient vanish."""
    log_p = THETA.log_softmax(0)

    def loss(weight: torch.Tensor, token: int) -> torch.Tensor:
        value, _ = policy_loss(
            torch.ones(1, 1, dtype=torch.float64),
            weight[:, None],
            torch.tensor([0]),
            torch.tensor([token]),
            torch.zeros(1, dtype=torch.float64),
            ref_logp=log_p[token : token + 1],
            kl_coef=1.0,
            kl_estimator=estimator,
            impl="reference",
        )
        return value

    torch.testing.assert_close(
        expected_gradient(loss), torch.zeros(VOCAB, dtype=torch.float64), atol=1e-12, rtol=0
    )
