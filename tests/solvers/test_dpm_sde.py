"""DPM++ SDE, 2M SDE and 3M SDE with Brownian-tree noise: the tree's increments telescope and do
not depend on the batch, the samplers match k-diffusion step for step with the same Brownian
path, refine the same path as the grid is refined (strong convergence), and sample the right
distribution (MMD against exact oracle draws at the noise floor)."""

from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path

import pytest
import torch

from interpolant import paths
from interpolant.data.oracles import GaussianMixture, three_modes
from interpolant.metrics.distances import mmd
from interpolant.randomness import Streams
from interpolant.solvers import Sampler, sample
from interpolant.solvers.adaptive import odeint_dopri5
from interpolant.solvers.brownian import STREAM, BrownianTree

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from peers_util import k_diffusion_sampling

PATH = paths.EDM(sigma_max=80.0)


def _oracle() -> GaussianMixture:
    return three_modes()


def _noise(n: int = 6, seed: int = 4) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_brownian_increments_over_a_partition_sum_to_the_coarse_increment():
    tree = BrownianTree(Streams(5, 4, STREAM), (3,))
    cuts = torch.sort(torch.rand(40, generator=torch.Generator().manual_seed(0)).double()).values
    times = [0.9, *cuts.tolist(), 0.0]
    times = sorted(set(times), reverse=True)
    pieces = sum(tree.increment(a, b) for a, b in itertools.pairwise(times))
    torch.testing.assert_close(pieces, tree.increment(times[0], times[-1]), rtol=0, atol=1e-13)


def test_brownian_values_do_not_depend_on_batch_or_query_order():
    full = BrownianTree(Streams(9, [0, 1, 2, 3, 4], STREAM), (2,))
    part = BrownianTree(Streams(9, [3, 1], STREAM), (2,))
    later = full.value(0.3)  # another query first
    torch.testing.assert_close(part.value(0.7), full.value(0.7)[[3, 1]], rtol=0, atol=0)
    torch.testing.assert_close(full.value(0.3), later, rtol=0, atol=0)


def test_brownian_increments_have_the_brownian_law():
    # Var(W(t1) - W(t0)) = |t1 - t0|, independent over disjoint intervals, and W(t) has the
    # covariance min(s, t): checked on 20000 paths.
    tree = BrownianTree(Streams(1, 20000, STREAM), ())
    w3, w5, w8 = (tree.value(t) for t in (0.3, 0.5, 0.8125))
    assert float(w5.var()) == pytest.approx(0.5, rel=0.04)
    assert float((w8 - w5).var()) == pytest.approx(0.3125, rel=0.04)
    assert abs(float(torch.corrcoef(torch.stack([w3, w8 - w5]))[0, 1])) < 0.03
    assert float((w3 * w8).mean()) == pytest.approx(0.3, abs=0.02)


CASES = {  # our solver (and options after a space) -> k-diffusion's sampler
    "dpmpp_sde": "sample_dpmpp_sde",
    "dpmpp_2m_sde": "sample_dpmpp_2m_sde",
    "dpmpp_2m_sde heun": "sample_dpmpp_2m_sde",
    "dpmpp_3m_sde": "sample_dpmpp_3m_sde",
}


def _solver(case: str) -> dict:
    name, *variant = case.split()
    return {"name": name, **({"solver_type": variant[0]} if variant else {})}


@pytest.mark.peers
@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("eta", [1.0, 0.5, 0.0])
def test_matches_k_diffusion_with_the_same_brownian_path(name, eta):
    k_sampling = k_diffusion_sampling()
    gm, noise = _oracle(), _noise()
    options = {**_solver(name), "eta": eta, "s_noise": 0.97}
    peer_options = {"solver_type": "heun"} if name == "dpmpp_2m_sde heun" else {}
    if name == "dpmpp_3m_sde":
        options["third_order"] = "k-diffusion"
    ours = sample(gm.model(PATH), noise, Sampler(options, steps=10, grid="karras", seed=7))
    sigmas = ours.grid * 80.0
    tree = BrownianTree.like(Streams(7, noise.shape[0], STREAM), noise)

    def t_of(sigma: torch.Tensor) -> float:  # path time as the sampler computes it
        return min(float(PATH.t_of_edm_sigma(torch.as_tensor(sigma, dtype=torch.float64))), 1.0)

    expected = getattr(k_sampling, CASES[name])(
        lambda x, sigma: gm.denoiser(x, sigma / 80.0, PATH),
        noise * sigmas[0],
        sigmas,
        eta=eta,
        s_noise=0.97,
        noise_sampler=lambda sigma, sigma_next: tree.normal(t_of(sigma), t_of(sigma_next)),
        disable=True,
        **peer_options,
    )
    # 1e-8: k-diffusion's times come back from sigma = 80 t, one ulp off ours, and a Brownian
    # path has slope ~ 2^15 inside its leaves of width 2^-30.
    torch.testing.assert_close(ours.x, expected, rtol=1e-8, atol=1e-8)
    assert ours.nfe == (19 if name == "dpmpp_sde" else 10)


@pytest.mark.parametrize(
    ("options", "order"),
    [
        ({"name": "dpmpp_3m_sde", "eta": 0.0}, 3.0),
        ({"name": "dpmpp_3m_sde", "eta": 0.0, "third_order": "k-diffusion"}, 2.0),
        ({"name": "dpmpp_sde", "eta": 0.0}, 2.0),
        ({"name": "dpmpp_2m_sde", "eta": 0.0}, 2.0),
        ({"name": "dpmpp_2m_sde", "eta": 0.0, "solver_type": "heun"}, 2.0),
    ],
)
def test_convergence_order_of_the_ode_limit(options, order):
    # eta = 0: against an adaptive solution of dx/dlog s = x - x0_hat on the EDM path from
    # s = 80 to 0.05 on log-uniform grids (as tests/solvers/test_solvers_convergence.py).
    gm, noise = _oracle(), _noise(16, 0)
    gm = GaussianMixture(gm.means, gm.covs * 4.0)

    def field(x: torch.Tensor, log_s: float) -> torch.Tensor:
        t = torch.full((x.shape[0],), math.exp(log_s) / 80.0, dtype=torch.float64)
        return x - gm.denoiser(x, t, PATH)

    reference, _ = odeint_dopri5(
        field, noise * 80.0, math.log(80.0), math.log(0.05), rtol=1e-11, atol=1e-11
    )
    errors = []
    for steps in (32, 64, 128):
        sigma = torch.exp(torch.linspace(math.log(80.0), math.log(0.05), steps + 1)).double()
        x = sample(gm.model(PATH), noise, solver=options, grid=sigma / 80.0).x
        errors.append(float((x - reference).pow(2).mean().sqrt()))
    slope = math.log2(errors[1] / errors[2])
    assert abs(slope - order) < 0.3, (errors, slope)


@pytest.mark.parametrize("name", sorted(CASES))
def test_refining_the_grid_refines_the_same_path(name):
    solver = _solver(name)
    # Strong convergence: with the noise an increment of one Brownian path per sample, the
    # sample at 2N steps approaches the sample at 4N steps (independent noise per grid would
    # leave them O(1) apart). EDM path on log-uniform sigma from 80 down to 0.05.
    gm, noise = _oracle(), _noise(64, 3)

    def run(steps: int, seed: int = 11) -> torch.Tensor:
        sigma = torch.exp(torch.linspace(math.log(80.0), math.log(0.05), steps + 1)).double()
        return sample(gm.model(PATH), noise, solver=solver, grid=sigma / 80.0, seed=seed).x

    x8, x16, x32, x64 = (run(n) for n in (8, 16, 32, 64))
    gaps = [float((a - b).pow(2).mean().sqrt()) for a, b in ((x8, x16), (x16, x32), (x32, x64))]
    other_path = float((run(64, seed=12) - x64).pow(2).mean().sqrt())
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 0.6 * gaps[0], gaps
    assert gaps[2] < 0.3 * other_path, (gaps, other_path)


def test_samples_do_not_depend_on_batch_composition():
    gm, noise = _oracle(), _noise(8, 2)
    spec = Sampler("dpmpp_sde", steps=6, seed=4)
    full = sample(gm.model(PATH), noise, spec).x
    part = sample(gm.model(PATH), noise[[5, 2]], spec, index=[5, 2]).x
    torch.testing.assert_close(part, full[[5, 2]], rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(CASES))
def test_samples_the_oracle_distribution(name):
    # The MMD (bandwidth 0.5) between 1500 samples and 1500 exact draws sits at the noise floor
    # (the MMD between independent exact draws), while a 10% scale error is far above it.
    gm = _oracle()
    x = sample(gm.model(PATH), _noise(1500, 8), solver=_solver(name), steps=40, seed=2).x
    exact = [gm.sample(1500, torch.Generator().manual_seed(k)).double() for k in (1, 2, 3)]
    floor = max(abs(float(mmd(exact[0], e, 0.5))) for e in exact[1:])
    threshold = 4 * floor + 2e-4
    assert float(mmd(x, exact[0], 0.5)) < threshold, (float(mmd(x, exact[0], 0.5)), floor)
    assert float(mmd(1.1 * x, exact[0], 0.5)) > threshold
