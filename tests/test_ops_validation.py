"""Bad arguments to ``swirl.ops`` raise ValueErrors that name the argument."""

from __future__ import annotations

import warnings

import pytest
import torch
from ops_cases import make_case, torch_single_thread  # noqa: F401 (autouse fixture)

from swirl.ops import policy_loss, resolve_impl, target_logprobs


@pytest.fixture
def case():
    return make_case(6, 8, 20, 5, seed=31)


def _replace(case, **changes):
    arguments = {
        "hidden": case.hidden,
        "weight": case.weight,
        "rows": case.rows,
        "targets": case.targets,
    }
    options = {k: v for k, v in changes.items() if k not in arguments}
    arguments.update({k: v for k, v in changes.items() if k in arguments})
    return arguments, options


def _nan_at(tensor, index):
    tensor = tensor.clone()
    tensor.view(-1)[index] = float("nan")
    return tensor


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hidden": torch.zeros(6, 8, 1)}, "hidden must be 2-D"),
        ({"hidden": torch.zeros(6, 8, dtype=torch.int64)}, "hidden must be float32"),
        ({"hidden": torch.zeros(0, 8)}, "hidden is empty"),
        ({"weight": torch.zeros(20, 8, dtype=torch.float64)}, "weight has dtype torch.float64"),
        ({"weight": torch.zeros(20, 9)}, r"weight has shape \(20, 9\) \[V, D\] but hidden has D=8"),
        ({"rows": torch.tensor([0, 1, 6, 2, 3])}, r"rows holds 6, outside \[0, 6\)"),
        ({"rows": torch.tensor([0, -1, 2, 2, 3])}, r"rows holds -1, outside \[0, 6\)"),
        ({"rows": torch.tensor([0.0, 1.0, 2.0, 2.0, 3.0])}, "rows must be an integer tensor"),
        ({"rows": torch.zeros(0, dtype=torch.int64)}, "rows is empty"),
        ({"targets": torch.tensor([0, 1, 2, 20, 3])}, r"targets holds 20, outside \[0, 20\)"),
        ({"targets": torch.tensor([[0, 1, 2, 3, 4]])}, "targets must be 1-D"),
        ({"targets": torch.tensor([0, 1, 2])}, r"targets has shape \(3,\) but rows has \(5,\)"),
        ({"softcap": 0.0}, "softcap must be a finite number > 0"),
        ({"temperature": float("inf")}, "temperature must be a finite number > 0"),
        ({"impl": "cuda"}, "impl must be one of"),
    ],
)
def test_target_logprobs_errors_name_the_argument(case, change, message):
    arguments, options = _replace(case, **change)
    with pytest.raises(ValueError, match=message):
        target_logprobs(**arguments, **options)


def test_non_finite_inputs_are_rejected(case):
    with pytest.raises(ValueError, match=r"hidden holds 1 non-finite value"):
        target_logprobs(_nan_at(case.hidden, 7), case.weight, case.rows, case.targets)
    weight = case.weight.clone()
    weight[3, :2] = float("inf")
    with pytest.raises(ValueError, match=r"weight holds 2 non-finite value"):
        target_logprobs(case.hidden, weight, case.rows, case.targets)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"advantages": torch.zeros(4)}, r"advantages must have shape \(5,\), got \(4,\)"),
        ({"advantages": torch.zeros(5, dtype=torch.int64)}, "advantages must be a floating"),
        ({"old_logp": _nan_at(torch.zeros(5), 2)}, "old_logp holds 1 non-finite"),
        ({"ref_logp": torch.zeros(5, 1)}, r"ref_logp must have shape \(5,\)"),
        ({"behavior_logp": torch.zeros(6)}, r"behavior_logp must have shape \(5,\)"),
        ({"clip_low": 0.2}, "clip_low needs old_logp"),
        ({"clip_low": 1.5, "old_logp": torch.zeros(5)}, r"clip_low must be in \(0, 1\)"),
        (
            {"clip_low": 0.2, "clip_high": -1.0, "old_logp": torch.zeros(5)},
            "clip_high must be a finite number > 0",
        ),
        ({"kl_coef": 0.1}, "kl_coef > 0 needs ref_logp"),
        ({"kl_coef": -1.0, "ref_logp": torch.zeros(5)}, "kl_coef must be a finite number >= 0"),
        ({"kl_estimator": "k4"}, "kl_estimator must be one of"),
        ({"kl_clamp": 0.0}, "kl_clamp must be a finite number > 0"),
        ({"entropy_coef": -0.1}, "entropy_coef must be a finite number >= 0"),
        ({"tis_cap": 2.0}, "tis_cap needs behavior_logp"),
        ({"tis_cap": 0.0, "behavior_logp": torch.zeros(5)}, "tis_cap must be a finite number > 0"),
        ({"normalize": "mean"}, "normalize must be one of"),
        ({"normalize": "sequence"}, 'sequence is required when normalize="sequence"'),
        (
            {"normalize": "sequence", "sequence": torch.zeros(5)},
            "sequence must be an integer tensor",
        ),
        ({"sequence": torch.zeros(3, dtype=torch.int64)}, r"sequence must have shape \(5,\)"),
        ({"rows": torch.tensor([0, 1, 2, 3, 9])}, r"rows holds 9"),
    ],
)
def test_policy_loss_errors_name_the_argument(case, change, message):
    change.setdefault("advantages", torch.ones(5))
    arguments, options = _replace(case, **change)
    with pytest.raises(ValueError, match=message):
        policy_loss(**arguments, **options)


def test_triton_on_cpu_without_interpreter_is_an_error(case, monkeypatch):
    pytest.importorskip("triton")
    import swirl.kernels.target_logprobs as kernels

    monkeypatch.setattr(kernels, "INTERPRET", False)
    with pytest.raises(ValueError, match="impl='triton' needs CUDA tensors"):
        resolve_impl("triton", case.hidden)
    with pytest.raises(ValueError, match="use 'chunked' for float64"):
        resolve_impl("triton", case.hidden.double())


def test_auto_picks_chunked_on_cpu(case):
    assert resolve_impl("auto", case.hidden) == "chunked"
    assert resolve_impl("reference", case.hidden) == "reference"


@pytest.fixture
def torch_warns_always():
    """torch gives some warnings once per process: make them fire in this test whatever ran
    before it."""
    previous = torch.is_warn_always_enabled()
    torch.set_warn_always(True)
    yield
    torch.set_warn_always(previous)


@pytest.mark.parametrize("impl", ["reference", "chunked"])
def test_checks_on_tensors_that_require_grad_do_not_warn(case, impl, torch_warns_always):
    """A training step passes hidden and weight with requires_grad: the finiteness checks read
    them without torch's "Converting a tensor with requires_grad=True to a scalar" warning."""
    hidden = case.hidden.clone().requires_grad_()
    weight = case.weight.clone().requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, _ = policy_loss(
            hidden,
            weight,
            case.rows,
            case.targets,
            torch.ones(5),
            old_logp=torch.zeros(5),
            ref_logp=torch.zeros(5),
            clip_low=0.2,
            kl_coef=0.1,
            return_entropy=True,
            impl=impl,
        )
        loss.backward()
    assert hidden.grad is not None and weight.grad is not None
