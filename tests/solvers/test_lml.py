"""LML: the rank-one Gauss-Newton Hessian against the closed form on a Gaussian, the damped
inverse (Sherman-Morrison) and its square root against dense linear algebra, the exact reduction
to plain Langevin without curvature, and the released correction's kappa = 0 identity (exact in
float64, rounding noise in float32)."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant import paths
from interpolant.data.oracles import GaussianMixture, ring2d
from interpolant.randomness import normal
from interpolant.solvers import sample
from interpolant.solvers.lml import LML, lm_direction, lm_sqrt_apply


def _gaussian(d: int = 3) -> GaussianMixture:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return GaussianMixture(
        torch.randn(1, d, generator=g, dtype=torch.float64),
        (a @ a.T + 0.1 * torch.eye(d, dtype=torch.float64))[None],
    )


@pytest.mark.parametrize("t", [0.2, 0.5, 0.8])
def test_rank_one_gauss_newton_matches_the_closed_form_hessian_in_expectation(t):
    # Fisher identity: E[eps_hat eps_hat^T] = sigma^2 (alpha^2 C + sigma^2 I)^{-1} = E[H_eps].
    mix, path = _gaussian(), paths.VPLinear()
    tt = torch.tensor(t, dtype=torch.float64)
    alpha, sigma = float(path.alpha(tt)), float(path.sigma(tt))
    cov_t = alpha**2 * mix.covs[0] + sigma**2 * torch.eye(3, dtype=torch.float64)
    hessian_eps = sigma**2 * torch.linalg.inv(cov_t)
    gen = torch.Generator().manual_seed(1)
    x = alpha * mix.sample(100_000, gen) + sigma * torch.randn(
        100_000, 3, generator=gen, dtype=torch.float64
    )
    g = -sigma * mix.score(x, t, path)  # eps_hat = -sigma * score
    gauss_newton = g.T @ g / g.shape[0]
    err = torch.linalg.matrix_norm(gauss_newton - hessian_eps) / torch.linalg.matrix_norm(
        hessian_eps
    )
    assert float(err) < 0.02
    # The model's Hessian itself (autograd on the exact score) is the closed form.
    jac = torch.autograd.functional.jacobian(lambda y: mix.score(y[None], t, path)[0], x[0])
    torch.testing.assert_close(-(sigma**2) * jac, hessian_eps, rtol=1e-10, atol=1e-12)


def test_damped_inverse_and_its_square_root_against_dense_algebra():
    gen = torch.Generator().manual_seed(2)
    v, g, z = (torch.randn(5, 7, generator=gen, dtype=torch.float64) for _ in range(3))
    for lam in (1e-3, 0.5, 20.0):
        for i in range(5):
            m = lam * torch.linalg.inv(
                lam * torch.eye(7, dtype=torch.float64) + torch.outer(g[i], g[i])
            )
            torch.testing.assert_close(lm_direction(v, g, lam)[i], m @ v[i], rtol=1e-10, atol=1e-12)
            half = lm_sqrt_apply(lm_sqrt_apply(z, g, lam), g, lam)[i]
            torch.testing.assert_close(half, m @ z[i], rtol=1e-10, atol=1e-12)


def _run(solver_options, name="lml", dtype=torch.float64):
    mix, path = ring2d(), paths.VPLinear()
    noise = normal((2,), 0, 64, "test-noise", dtype=dtype)
    return sample(
        mix.model(path, dtype),
        noise,
        solver={"name": name, **(solver_options or {})},
        nfe=13,
        grid="uniform",
        seed=3,
    ).x


@pytest.mark.parametrize("corrector", ["langevin", "ald"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_no_curvature_is_plain_langevin_exactly(corrector, dtype):
    plain = _run({"corrector": corrector}, name="pc", dtype=dtype)
    off = _run({"corrector": corrector, "damping": math.inf}, dtype=dtype)
    assert torch.equal(plain, off)
    on = _run({"corrector": corrector, "damping": 1.0}, dtype=dtype)
    assert not torch.allclose(plain, on)


def test_released_correction_at_kappa_zero_is_the_identity_in_float64_only():
    gen = torch.Generator().manual_seed(4)
    v = torch.randn(8, 3000, generator=gen, dtype=torch.float64)  # |v|^2 ~ 3000, as an image eps
    exact = lm_direction(v, v, 8e-4, renormalize=True)
    assert float((exact - v).abs().max() / v.abs().max()) < 1e-8
    v32 = v.float()
    rounded = lm_direction(v32, v32, 8e-4, renormalize=True)
    assert float((rounded.double() - v).abs().max() / v.abs().max()) > 1e-3
    # The solver: released mode in float64 is plain Langevin up to rounding.
    plain = _run({}, name="pc")
    released = _run({"mode": "released"})
    torch.testing.assert_close(released, plain, rtol=1e-9, atol=1e-9)


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="damping"):
        LML(damping=0.0)
    with pytest.raises(ValueError, match="kappa"):
        LML(kappa=1.0)
    with pytest.raises(ValueError, match="mode"):
        LML(mode="newton")
