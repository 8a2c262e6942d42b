"""FPS-SMC against exact answers: its observation path has the forward twin's marginals
N(alpha_t y, sigma_t^2 A A^T) at every node, its posterior mean and spread match the exact
mixture posterior at small measurement noise, and it runs through ``inverse.solve``."""

from __future__ import annotations

import torch

import interpolant as ip
from interpolant.data.oracles import GaussianMixture
from interpolant.inverse import solve
from interpolant.inverse.fps import FPS, bridge_std
from interpolant.inverse.operators import RandomProjection
from interpolant.inverse.posterior import mixture_posterior
from interpolant.inverse.smc import smc_posterior
from interpolant.solvers import Run
from interpolant.solvers.dpm import DDIM
from interpolant.solvers.grids import Uniform

torch.set_num_threads(1)
D = 3


def _problem(noise: float):
    g = torch.Generator().manual_seed(0)
    means = torch.randn(3, D, generator=g, dtype=torch.float64) * 1.5
    covs = torch.stack([0.3 * torch.eye(D, dtype=torch.float64)] * 3)
    prior = GaussianMixture(means, covs, torch.tensor([0.5, 0.3, 0.2]))
    op = RandomProjection((D,), 2, noise_std=noise, seed=1)
    y = op.measure(prior.sample(1, torch.Generator().manual_seed(2)), seed=3)
    return prior.model(ip.paths.VPLinear()), op, y, mixture_posterior(prior, op, y)


def test_observation_path_has_the_forward_marginals() -> None:
    model, op, y, _ = _problem(0.05)
    groups = 4096
    hook = FPS(op, y.expand(groups, -1), 1)
    spec = ip.Sampler(DDIM(eta=1.0), steps=20, grid=Uniform())
    run = Run.for_model(model, spec.times(model.path), solver=DDIM(eta=1.0), seed=0)
    run.x_start = torch.zeros(groups, D, dtype=torch.float64)
    state = hook.start(run)
    for i in range(len(run.nodes) - 1):
        now, nxt = run.nodes[i], run.nodes[i + 1]
        hook.observation(state, now, nxt, bridge_std(now, nxt) ** 2)
        if i in (4, 12):
            centred = state.y_path - nxt.alpha * hook.y_r
            cov = centred.T @ centred / groups
            expected = nxt.sigma**2 * hook.gram
            # 4096 draws: the sample covariance is within ~5 % of the truth.
            assert float((cov - expected).abs().max()) < 0.08 * float(expected.abs().max())
            assert float(centred.mean(0).abs().max()) < 4 * nxt.sigma * 2 / groups**0.5
    # The path ends at the measurement itself.
    torch.testing.assert_close(state.y_path, hook.y_r)


def test_posterior_mean_and_spread_match_the_exact_posterior() -> None:
    model, op, y, post = _problem(0.05)
    n = 256
    out = smc_posterior(model, op, y, method="fps", particles=32, n=n, steps=50, seed=4)
    sd = post.covariance()[0].diagonal().sqrt()
    w = torch.softmax(out.log_weights, dim=1)
    est = (w[..., None] * out.particles).sum(1).mean(0)
    # The mean of n independent groups: within 4 standard errors of E[x | y].
    assert bool(((est - post.mean()[0]).abs() < 4 * sd / n**0.5).all())
    ratio = out.x.std(0) / sd
    assert bool((ratio > 0.8).all() and (ratio < 1.2).all())
    assert out.nfe == 32 * 50 and len(out.resample_steps) > 0
    assert all(0 < e <= 1 + 1e-9 for _, e in out.ess)
    assert bool(torch.isfinite(out.log_evidence).all())


def test_fps_through_solve_counts_nfe_per_draw() -> None:
    model, op, y, _ = _problem(0.05)
    out = solve(model, op, y.expand(2, -1), "fps", particles=4, steps=10, seed=1)
    assert out.x.shape == (2, D) and out.nfe == 40
