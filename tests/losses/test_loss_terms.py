"""Extra loss terms: the step-variation regulariser against its closed form on a linear
denoiser, its running mean's independence of how the batch is split, warm-up, configs, errors and
its checkpointed state through the trainer."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from interpolant import Model, paths
from interpolant.errors import UserError
from interpolant.losses import LossInputs, Objective, StepVariation, get_terms
from interpolant.predictions import Coefficients
from interpolant.train import Trainer
from interpolant.train.checkpoint import CheckpointError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from train_helpers import make_config, make_data, make_model

S0 = 0.7  # data ~ N(0, S0^2 I): the exact denoiser is linear in x_t


class GaussianDenoiser(nn.Module):
    """x0_hat = alpha s0^2 / (alpha^2 s0^2 + sigma^2) x_t on the VP path, times a learnable
    scale (1 at init) so that gradients reach a parameter."""

    def __init__(self, path: paths.GaussianPath) -> None:
        super().__init__()
        self.path = path
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        c = Coefficients.at(self.path, t, x)
        return self.scale * c.alpha * S0**2 / (c.alpha**2 * S0**2 + c.sigma**2) * x


def _draw(batch=64, dim=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x0 = S0 * torch.randn(batch, dim, generator=gen, dtype=torch.float64)
    t = torch.rand(batch, generator=gen, dtype=torch.float64) * 0.9 + 0.05
    return x0, t, torch.randn(batch, dim, generator=gen, dtype=torch.float64)


def _inputs(path, draws=None, detach=False, seed=0):
    x0, t, eps = draws if draws is not None else _draw(seed=seed)
    eps = eps.detach().clone().requires_grad_(True)
    net = GaussianDenoiser(path).double()
    model = Model((lambda x, t: net(x, t).detach()) if detach else net, path, predicts="x0")
    x_t = path.sample_xt(x0, t, eps)
    pred = Objective(path, target="x0").prediction(model, x_t, t)
    sigma = torch.as_tensor(Coefficients.at(path, t, x0).sigma)
    return LossInputs(x0, eps, t, x_t, pred, sigma, torch.Generator().manual_seed(7), None)


def test_step_variation_matches_the_closed_form_of_a_linear_denoiser():
    # d x0_hat / d eps = c(t) sigma(t) I, so ell = c sigma ||y|| with y ~ N(0, I) sigma / sqrt(D).
    path = paths.VP()
    inputs = _inputs(path)
    ell = StepVariation().variation(inputs)
    y = torch.randn(
        inputs.x0.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64
    )
    c = Coefficients.at(path, inputs.t, inputs.x0)
    gain = (c.alpha * S0**2 / (c.alpha**2 * S0**2 + c.sigma**2) * c.sigma)[:, 0]
    expected = gain * (y * c.sigma / math.sqrt(5)).norm(dim=1)
    torch.testing.assert_close(ell.detach(), expected, rtol=1e-12, atol=0)


def test_running_mean_is_the_global_batch_mean_however_the_batch_is_split():
    # One step's mean is sum(ell) / count over every block, not a mean of block means.
    path = paths.VP()
    whole, blocks = StepVariation(), StepVariation()
    ell = whole.variation(_inputs(path)).detach()
    whole.penalty(_inputs(path))
    whole.end_step()
    assert whole.mean_variation == pytest.approx(float(ell.mean()), rel=1e-12)
    draws, block_ells = _draw(), []
    for rows in (slice(0, 24), slice(24, 64)):  # two noise blocks of unequal size
        part = tuple(d[rows] for d in draws)
        block_ells.append(StepVariation().variation(_inputs(path, part)).detach())
        blocks.penalty(_inputs(path, part))
    blocks.end_step()
    pooled = float(torch.cat(block_ells).mean())
    assert blocks.mean_variation == pytest.approx(pooled, rel=1e-12)
    mean_of_means = float((block_ells[0].mean() + block_ells[1].mean()) / 2)
    assert abs(pooled - mean_of_means) > 1e-4
    assert int(blocks.running[1]) == 1


def test_penalty_is_off_during_warm_up_then_the_squared_deviation_from_the_mean():
    path = paths.VP()
    term = StepVariation(warmup_steps=2)
    for _ in range(2):
        assert float(term.penalty(_inputs(path)).detach().abs().max()) == 0.0
        term.end_step()
    a = term.mean_variation
    assert a > 0
    ell = StepVariation().variation(_inputs(path, seed=3)).detach()
    torch.testing.assert_close(term.penalty(_inputs(path, seed=3)).detach(), (ell - a).square())


def test_objective_with_the_term_adds_its_weighted_penalty_and_its_gradient():
    path = paths.VP()
    x0 = S0 * torch.randn(32, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    net = GaussianDenoiser(path).double()
    model = Model(net, path, predicts="x0")
    plain = Objective(path, target="x0")
    term = StepVariation(weight=3.0)
    term.running[:] = torch.tensor([0.05, 1.0], dtype=torch.float64)  # past warm-up
    regular = Objective(path, target="x0", terms=[term])
    base = plain.per_sample_loss(model, x0, torch.Generator().manual_seed(2))
    total = regular.per_sample_loss(model, x0, torch.Generator().manual_seed(2))
    assert bool((total > base).all())  # same t and eps draws, plus a positive penalty
    (grad,) = torch.autograd.grad(total.mean(), net.scale)
    (grad_plain,) = torch.autograd.grad(base.mean(), net.scale)
    assert abs(float(grad - grad_plain)) > 1e-6


def test_term_refuses_a_model_that_detaches_its_output():
    with pytest.raises(UserError, match="does not require grad"):
        StepVariation().variation(_inputs(paths.VP(), detach=True))


def test_terms_from_specs_and_config_round_trip():
    objective = Objective(paths.Linear(), terms=["step-variation:0.5"])
    assert objective.terms == (StepVariation(weight=0.5),)
    again = Objective.from_config(objective.config())
    assert again.terms == objective.terms and again.config() == objective.config()
    assert Objective(paths.Linear()).config().get("terms") is None  # plain configs unchanged
    with pytest.raises(UserError, match="unknown loss term 'smooth'"):
        get_terms("smooth")
    with pytest.raises(UserError, match="must be a number"):
        get_terms("step-variation:lots")
    with pytest.raises(UserError, match="more than once"):
        get_terms(["step-variation", "step-variation:2"])
    with pytest.raises(UserError, match="weight must be a finite number >= 0"):
        StepVariation(weight=-1.0)


def _train(run_dir, objective, steps):
    x, _ = make_data()
    cfg = make_config(run_dir, steps=steps, checkpoint_every=2, batch_per_gpu=8, ema="none")
    return Trainer(make_model(), objective, x, cfg).run()


def test_trainer_checkpoints_the_running_mean_and_refuses_a_mismatch(tmp_path):
    straight = Objective(paths.Linear(), terms=["step-variation"])
    _train(tmp_path / "a", straight, steps=4)
    first = Objective(paths.Linear(), terms=["step-variation"])
    _train(tmp_path / "b", first, steps=2)
    resumed = Objective(paths.Linear(), terms=["step-variation"])
    _train(tmp_path / "b", resumed, steps=4)
    assert int(resumed.terms[0].running[1]) == 4  # two steps restored, two more run
    assert resumed.terms[0].mean_variation == straight.terms[0].mean_variation
    with pytest.raises(CheckpointError, match="objective"):
        _train(tmp_path / "b", Objective(paths.Linear()), steps=6)
