"""The discretised chain the SMC samplers target, on Gaussian data (its exact law is a Gaussian
recursion, ``inverse.chain``): the ancestral sampler's variance deficit is the kernel's own
first-order error (not the grid's start, the oracle or statistics), and the SMC evidence
estimate is unbiased for the chain's p(y), with the Jensen gap of log Z_hat falling like 1/K."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import interpolant as ip
from interpolant.data.oracles import GaussianMixture
from interpolant.inverse.chain import chain_law, chain_log_evidence
from interpolant.inverse.operators import RandomProjection
from interpolant.inverse.posterior import mixture_posterior
from interpolant.inverse.smc import SMC_SAMPLER, smc_posterior
from interpolant.solvers import Sampler, sample
from interpolant.solvers.dpm import DDIM
from interpolant.solvers.grids import Uniform

torch.set_num_threads(1)


def _gaussian(d: int, var: float = 1.0) -> GaussianMixture:
    means = torch.linspace(-1.0, 1.0, d, dtype=torch.float64)[None]
    return GaussianMixture(means, var * torch.eye(d, dtype=torch.float64)[None])


def test_ancestral_sampler_follows_its_chain_law_and_converges_at_first_order() -> None:
    d, n = 16, 4096
    prior = _gaussian(d)
    model = prior.model(ip.paths.VPLinear())
    noise = torch.randn(n, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    se = math.sqrt(2 / (n * d))  # of the coordinate-averaged sample variance, var = 1
    deficits = []
    for steps in (25, 50, 100):
        spec = Sampler(DDIM(eta=1.0), steps=steps, grid=Uniform(), seed=1)
        mean, var = chain_law(prior, model, spec)
        x = sample(model, noise, spec).x
        # The library's sampler is the chain the recursion describes (to Monte Carlo error).
        assert abs(float(x.var(0).mean() - var.mean())) < 4 * se, steps
        assert float((x.mean(0) - mean).abs().max()) < 4.5 / math.sqrt(n)
        deficits.append(1 - float(var.mean()))
        # The deficit is the omitted Var[x0 | x_t]: with it the kernel is exact at any steps.
        _, exact_var = chain_law(prior, model, spec, with_x0_variance=True)
        torch.testing.assert_close(exact_var, torch.ones(d, dtype=torch.float64), atol=1e-6, rtol=0)
    # First order: halving the step size halves the deficit (25 steps: 0.25 below 1).
    assert deficits[0] > 0.2
    for coarse, fine in itertools.pairwise(deficits):
        assert 1.7 < coarse / fine < 2.1


def _problem():
    prior = GaussianMixture(
        torch.tensor([[0.5, -1.0, 1.5]], dtype=torch.float64),
        torch.diag(torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64))[None],
    )
    op = RandomProjection((3,), 1, noise_std=0.2, seed=1)
    y = op.measure(prior.sample(1, torch.Generator().manual_seed(2)), seed=3)
    return prior, prior.model(ip.paths.VPLinear()), op, y


@pytest.mark.parametrize("method", ["tds", "tds_prior"])
def test_evidence_is_unbiased_for_the_chain_and_its_log_gap_falls_like_one_over_k(
    method: str,
) -> None:
    prior, model, op, y = _problem()
    chain = float(chain_log_evidence(prior, model, SMC_SAMPLER, op, y)[0])
    exact = float(mixture_posterior(prior, op, y).log_evidence[0])
    assert chain != pytest.approx(exact, abs=1e-3)  # the chain is not the exact prior
    spread = {}
    for k, groups in ((16, 512), (64, 512)):
        lz = smc_posterior(model, op, y, method=method, particles=k, n=groups, seed=11).log_evidence
        z = torch.exp(lz - lz.max())
        # E[Z_hat] = p_chain(y): log of the mean within 3 (delta-method) standard errors.
        rel_se = float(z.std() / z.mean()) / math.sqrt(groups)
        log_mean = float(torch.logsumexp(lz, 0)) - math.log(groups)
        assert abs(log_mean - chain) < 3 * rel_se, (k, log_mean, chain)
        # E[log Z_hat] = log p_chain(y) - Var[log Z_hat] / 2 to second order (Jensen's gap;
        # at K = 16 the tails of Z_hat make the second-order term too coarse for 3 se).
        var = float(lz.var())
        if k == 64:
            se_log = math.sqrt(var / groups)
            assert abs(float(lz.mean()) + var / 2 - chain) < 3 * se_log, (float(lz.mean()), chain)
        spread[k] = var
    # The gap falls like 1/K: 4x the particles, about a quarter of the variance.
    assert spread[16] > 2.5 * spread[64]


def test_chain_law_refuses_what_it_cannot_describe() -> None:
    prior = _gaussian(2)
    model = prior.model(ip.paths.VPLinear())
    with pytest.raises(ValueError, match="stochastic first-order"):
        chain_law(prior, model, Sampler(DDIM(eta=0.0), steps=5))
    mixture = GaussianMixture(
        torch.zeros(2, 2, dtype=torch.float64), torch.eye(2, dtype=torch.float64).expand(2, 2, 2)
    )
    with pytest.raises(ValueError, match="single Gaussian"):
        chain_law(mixture, model, SMC_SAMPLER)
    full = GaussianMixture(
        torch.zeros(1, 2, dtype=torch.float64),
        torch.tensor([[[1.0, 0.5], [0.5, 1.0]]], dtype=torch.float64),
    )
    with pytest.raises(ValueError, match="diagonal"):
        chain_law(full, model, SMC_SAMPLER)
    with pytest.raises(ValueError, match="first-order single-step"):
        chain_law(prior, model, Sampler("dpmpp_2m_sde", steps=5))
