"""ANT-UW uncertainty weighting (``losses.weights.UncertaintyWeight``): the per-sample algebra,
convergence of the learned weights to the closed-form optimum 1 / (2 sigma_k^2) = 1 / (2 L_k)
for fixed per-task losses, and the trainer optimising and checkpointing them bit for bit."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor

from interpolant import paths
from interpolant.errors import UserError
from interpolant.losses import Objective
from interpolant.losses.weights import MinSNR, UncertaintyWeight, get_weighting
from interpolant.train import Trainer
from interpolant.train.checkpoint import CheckpointError

sys.path.insert(0, str(Path(__file__).resolve().parent / "train"))
from train_helpers import make_config, make_data, make_model, state_of

TASK_LOSSES = torch.tensor([0.25, 1.0, 4.0], dtype=torch.float64)


def fixed_loss_net(x: Tensor, t: Tensor) -> Tensor:
    """Predicts x0 = sqrt(L_k) for the task k of t, so with x0 = 0 the task loss is exactly L_k."""
    task = (t.double() * 3).long().clamp(max=2)
    return TASK_LOSSES.sqrt()[task][:, None].expand_as(x).to(x.dtype)


def test_per_sample_loss_is_the_uncertainty_weighted_loss_plus_log_sigma():
    weight = UncertaintyWeight(groups=3, base=MinSNR(5.0))
    with torch.no_grad():
        weight.log_variance.copy_(torch.tensor([0.3, -0.2, 1.1]))
    path = paths.VP()
    objective = Objective(path, target="x0", weight=weight)
    x0, t = torch.zeros(6, 2, dtype=torch.float64), torch.linspace(0.05, 0.95, 6).double()
    loss = objective.per_sample_loss(fixed_loss_net, x0, t=t, eps=torch.randn(6, 2).double())
    s = weight.log_variance.double()[weight.task_of(t)]
    mse = TASK_LOSSES[(t * 3).long().clamp(max=2)]
    expected = MinSNR(5.0)(path, t, "x0") * mse * torch.exp(-s) / 2 + s / 2
    torch.testing.assert_close(loss, expected)
    assert weight.task_of(torch.tensor([0.0, 0.33, 0.34, 1.0])).tolist() == [0, 0, 1, 2]


def test_learned_weights_converge_to_one_over_twice_the_task_loss():
    weight = UncertaintyWeight(groups=3)
    objective = Objective(paths.Linear(), target="x0", weight=weight)
    x0 = torch.zeros(30, 1, dtype=torch.float64)
    t = torch.linspace(0.01, 0.99, 30, dtype=torch.float64)  # ten samples per task
    params = list(objective.named_parameters().values())
    assert [tuple(p.shape) for p in params] == [(3,)]
    opt = torch.optim.Adam(params, lr=0.05)
    for _ in range(600):
        opt.zero_grad()
        objective.loss(fixed_loss_net, x0, t=t, eps=torch.zeros_like(x0)).backward()
        opt.step()
    torch.testing.assert_close(weight.task_weights(), 1 / (2 * TASK_LOSSES), rtol=2e-3, atol=0)
    # The closed-form optimum s_k = log L_k is a stationary point of the loss exactly.
    with torch.no_grad():
        weight.log_variance.copy_(TASK_LOSSES.log())
    opt.zero_grad()
    objective.loss(fixed_loss_net, x0, t=t, eps=torch.zeros_like(x0)).backward()
    assert float(weight.log_variance.grad.abs().max()) < 1e-7


def test_names_and_configs_round_trip():
    assert get_weighting("ant-uw") == UncertaintyWeight(5)
    assert get_weighting("ant-uw-3").groups == 3
    objective = Objective(paths.VP(), target="eps", weight={"name": "ant-uw", "base": "min-snr"})
    assert isinstance(objective.weight, UncertaintyWeight)
    rebuilt = Objective.from_config(objective.config())
    assert rebuilt.weight == objective.weight and rebuilt.weight.base == MinSNR()
    assert rebuilt.weight.log_variance is not objective.weight.log_variance
    with pytest.raises(UserError):
        get_weighting("ant-uw-x")
    with pytest.raises(UserError):
        UncertaintyWeight(0)


def _run(run_dir, weight="ant-uw-3", **changes):
    x, y = make_data()
    cfg = make_config(run_dir, **{"steps": 8, "checkpoint_every": 4, **changes})
    objective = Objective(paths.Linear(), target="velocity", weight=weight)
    return Trainer(make_model(), objective, x, cfg, y).run()


def _loss_params(trainer) -> dict[str, Tensor]:
    out = {k: p.detach().clone() for k, p in trainer.objective_params.items()}
    for i, slots in trainer.objective_optimizer.state_dict()["state"].items():
        out.update({f"optim{i}.{k}": v.clone() for k, v in slots.items()})
    return out


def test_trainer_learns_the_log_variances_and_resume_restores_them_bitwise(tmp_path):
    straight = _run(tmp_path / "straight")
    learned = straight.objective_params["weight.log_variance"]
    assert float(learned.detach().abs().min()) > 0  # every task's uncertainty moved off its start
    first = _run(tmp_path / "resumed", steps=3)
    assert first.step == 3
    resumed = _run(tmp_path / "resumed")
    assert resumed.step == 8
    a, b = _loss_params(resumed), _loss_params(straight)
    assert sorted(a) == sorted(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    sa, sb = state_of(resumed), state_of(straight)
    assert all(torch.equal(sa[k], sb[k]) for k in sb)


def test_resume_with_another_weighting_is_refused(tmp_path):
    _run(tmp_path, steps=4)
    with pytest.raises(CheckpointError, match="learned loss parameters"):
        _run(tmp_path, weight="uniform")
