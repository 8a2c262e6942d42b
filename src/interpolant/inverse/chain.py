"""The exact law of a sampler's discretised chain on Gaussian data, the target the SMC samplers
converge to.

For data N(mu, diag(v)) the exact denoiser is affine in x_t (x0_hat = g x_t + h per
coordinate), so a one-evaluation stochastic step x' = mean(x_t) + c z is affine-Gaussian and the
chain's x_0 is Gaussian: N(m, diag(V)) with m' = a m + b, V' = a^2 V + c^2 from the start
N(0, sigma_T^2). The coefficients are read off the library's own model and solver step by
probing them at x = 0 and x = 1 (no formula is restated here), so the recursion is the law of
exactly the chain :func:`~interpolant.solvers.sample` runs, at any number of steps, without
Monte Carlo.

With ``with_x0_variance=True`` each step also carries (d mean / d x0_hat)^2 Var[x0 | x_t], the
term a kernel built on the point estimate x0_hat leaves out: the true reverse transition
p(x_s | x_t) of Gaussian data (Bao et al. 2022, "Analytic-DPM", eq. 7, is its optimal isotropic
form). The chain is then exact at any step count, which isolates the ancestral (DDPM, DDIM
eta = 1) kernel's first-order variance deficit as the whole of its discretisation error.

:func:`chain_log_evidence` is log p_chain(y) for y = A x_0 + s n under that law: what an SMC
sampler's log-evidence estimate is unbiased for (as Z, not log Z) on the chain.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..data.oracles import GaussianMixture
from ..errors import UserError
from ..predictions import Evaluations, Model
from ..solvers import Run, Sampler, State
from .base import Operator, x0_variance
from .posterior import mixture_posterior
from .smc import gaussian_step


def _diagonal_gaussian(prior: GaussianMixture) -> tuple[Tensor, Tensor]:
    if prior.means.shape[0] != 1:
        raise UserError(
            f"chain_law needs a single Gaussian (one component), got {prior.means.shape[0]}"
        )
    cov = prior.covs[0]
    if not torch.equal(cov, torch.diag(torch.diagonal(cov))):
        raise UserError("chain_law needs a diagonal covariance (coordinates evolve apart)")
    return prior.means[0].to(torch.float64), torch.diagonal(cov).to(torch.float64)


def chain_law(
    prior: GaussianMixture, model: Model, sampler: Sampler, *, with_x0_variance: bool = False
) -> tuple[Tensor, Tensor]:
    """(mean (D,), variance (D,)) of the x_0 that ``sampler`` draws from ``model``, the exact
    model of ``prior`` (one Gaussian with a diagonal covariance), started from sigma_T * noise.
    ``with_x0_variance`` adds Var[x0 | x_t] through the step (the exact reverse kernel)."""
    mu, v = _diagonal_gaussian(prior)
    solver = sampler.solver
    if not solver.stochastic or solver.order != 1:
        # A multistep solver's step also reads its history, so it is not affine in x_t alone.
        raise UserError(
            "chain_law needs a stochastic first-order single-step solver (ddim with eta > 0, "
            f"sde_euler, euler_ancestral), got {solver!r}"
        )
    grid = sampler.times(model.path)
    run = Run.for_model(model, grid, solver=solver, seed=0, rows=1)
    zeros = torch.zeros(1, mu.shape[0], dtype=torch.float64)
    ones = torch.ones_like(zeros)
    mean = torch.zeros_like(mu)
    var = torch.full_like(v, run.nodes[0].sigma ** 2)
    for i in range(run.n_steps):
        now, nxt = run.nodes[i], run.nodes[i + 1]
        run.index = i
        p0, p1 = (model.at(x, now, Evaluations()) for x in (zeros, ones))
        b, c = gaussian_step(run, State(zeros), p0, now, nxt)
        after_one, _ = gaussian_step(run, State(ones), p1, now, nxt)
        a = after_one - b
        mean, var = a[0] * mean + b[0], a[0] ** 2 * var + c[0] ** 2
        if with_x0_variance:
            # d step / d x0_hat at fixed x_t: the step's response to a unit shift of x0_hat.
            shifted, _ = gaussian_step(run, State(zeros), p0.replace("x0", p0.x0 + 1), now, nxt)
            d_x0 = (shifted - b)[0]
            # Var[x0 | x_t] of N(mu, v): the N(0, v) formula, coordinate by coordinate.
            post = torch.tensor([x0_variance(now, math.sqrt(float(vi))) for vi in v])
            var = var + d_x0**2 * post.to(var)
    return mean, var


def chain_log_evidence(
    prior: GaussianMixture,
    model: Model,
    sampler: Sampler,
    operator: Operator,
    y: Tensor,
) -> Tensor:
    """log p_chain(y) per row of y (B, *y_shape) for y = A x_0 + s n with x_0 the chain's
    Gaussian (:func:`chain_law`), over A's row space as
    :class:`~interpolant.inverse.posterior.MixturePosterior`'s ``log_evidence``."""
    mean, var = chain_law(prior, model, sampler)
    chain = GaussianMixture(mean[None], torch.diag(var)[None])
    evidence = mixture_posterior(chain, operator, y).log_evidence
    assert evidence is not None
    return evidence


__all__ = ["chain_law", "chain_log_evidence"]
