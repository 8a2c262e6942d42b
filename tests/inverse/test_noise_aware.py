"""Issue 13, Deliver 2: the solvers that read the measurement's noise level move the right way
on the exact linear-Gaussian case (prior N(0, I), half the coordinates observed, posterior
N(y / (1 + s^2), s^2 / (1 + s^2)) there and the prior elsewhere), and the paper defaults that do
not read it give the same output at every noise level, as their docstrings say."""

from __future__ import annotations

import pytest
import torch

from interpolant.data.oracles import GaussianMixture
from interpolant.guidance.energy import ReconstructionGuidance
from interpolant.inverse.base import start_noise
from interpolant.inverse.flowchef import flowchef
from interpolant.inverse.operators import Inpaint
from interpolant.inverse.solvers import ANCESTRAL, dps, red_diff, solve
from interpolant.paths import get_path
from interpolant.solvers import sample

torch.set_num_threads(1)

D = 4
MASK = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
X_TRUE = torch.tensor([[1.5, -1.0, 0.3, 0.2]], dtype=torch.float64)


def _model():
    prior = GaussianMixture(
        torch.zeros(1, D, dtype=torch.float64), torch.eye(D, dtype=torch.float64)[None]
    )
    return prior.model(get_path("vp"))


def _measure(noise: float, rows: int) -> tuple[Inpaint, torch.Tensor]:
    op = Inpaint(MASK, noise_std=noise)
    return op, op.measure(X_TRUE, seed=0).expand(rows, D).clone()


def _exact(y: torch.Tensor, noise: float) -> tuple[torch.Tensor, float]:
    """Posterior mean and variance of the observed coordinates."""
    return y[0, :2] / (1 + noise**2), noise**2 / (1 + noise**2)


@pytest.mark.parametrize("noise", [0.05, 0.5, 3.0])
def test_gaussian_dps_samples_the_exact_posterior(noise: float) -> None:
    op, y = _measure(noise, 400)
    out = dps(_model(), op, y, likelihood="gaussian", seed=1, nfe=60)
    mean, var = _exact(y, noise)
    observed = out.x[:, :2]
    # 400 draws: the mean's standard error is sqrt(var / 400) <= 0.05.
    tol = 4 * (var / 400) ** 0.5 + 0.01
    torch.testing.assert_close(observed.mean(0), mean, atol=tol, rtol=0)
    ratio = observed.var(0) / var
    # 60 ancestral steps undershoot the smallest variance; the spread still follows s^2.
    assert bool((ratio > (0.1 if noise < 0.1 else 0.7)).all() and (ratio < 1.3).all())


def test_gaussian_dps_moves_from_the_data_to_the_prior_mean_as_noise_grows() -> None:
    shrink, residual = [], []
    for noise in (0.01, 0.3, 3.0, 30.0):
        op, y = _measure(noise, 128)
        out = dps(_model(), op, y, likelihood="gaussian", seed=1, nfe=60)
        shrink.append(float(out.x[:, :2].mean(0).norm() / y[0, :2].norm()))
        residual.append(float((out.x[:, :2] - y[:, :2]).pow(2).mean().sqrt()))
    assert shrink == sorted(shrink, reverse=True)
    assert shrink[0] > 0.99 and shrink[-1] < 0.01  # exact: 1 / (1 + s^2)
    assert residual[0] < 3 * 0.01  # shrinks to the noise level


def test_paper_dps_and_flowchef_do_not_read_the_noise_level() -> None:
    """The documented defaults: the same y gives the same samples at any operator noise."""
    _, y = _measure(0.1, 32)
    outs = []
    for noise in (0.01, 1.0):
        op = Inpaint(MASK, noise_std=noise)
        outs.append((dps(_model(), op, y, seed=1, nfe=20).x, flowchef(_model(), op, y, seed=1).x))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=0, atol=0)
    torch.testing.assert_close(outs[0][1], outs[1][1], rtol=0, atol=0)


def test_red_diff_reads_the_noise_level_when_asked() -> None:
    shrink, residual = [], []
    for noise in (0.01, 0.5, 3.0):
        op, y = _measure(noise, 32)
        out = solve(_model(), op, y, "red_diff", noise_std="operator", seed=1)
        shrink.append(float(out.x[:, :2].mean(0).norm() / y[0, :2].norm()))
        residual.append(float((out.x[:, :2] - y[:, :2]).pow(2).mean().sqrt()))
        # The official weight ignores the noise: equal to giving sigma_v^2 = m / D by hand.
        official = red_diff(_model(), op, y, seed=1)
        by_hand = red_diff(_model(), op, y, seed=1, noise_std=(2 / D) ** 0.5)
        torch.testing.assert_close(official.x, by_hand.x)
    assert shrink == sorted(shrink, reverse=True) and shrink[-1] < 0.7
    assert residual[0] < 0.01  # a point estimate: below the noise level
    with pytest.raises(ValueError, match="noise_std must be"):
        red_diff(_model(), Inpaint(MASK), y, noise_std="operator")


def test_gaussian_reconstruction_guidance_reads_the_noise_level() -> None:
    """mode="gaussian" with data_std = 1 is the exact likelihood score for this prior."""
    for noise in (0.05, 3.0):
        op, y = _measure(noise, 256)
        hook = ReconstructionGuidance(op, y, 1.0, mode="gaussian", data_std=1.0)
        spec = ANCESTRAL.replace(nfe=40, seed=1)
        out = sample(_model(), start_noise(1, y.shape, y), spec, hooks=[hook])
        mean, var = _exact(y, noise)
        tol = 4 * (var / 256) ** 0.5 + 0.02
        torch.testing.assert_close(out.x[:, :2].mean(0), mean, atol=tol, rtol=0)
        # At s = 3 the exact mean is y / 10: the term follows the noise, not the data.
        assert float(out.x[:, :2].mean(0).norm()) < (0.5 if noise > 1 else 1.1) * float(
            y[0, :2].norm()
        )
