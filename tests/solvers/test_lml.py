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
from interpolant.predictions import Prediction
from interpolant.randomness import normal
from interpolant.solvers import State, fixed_run, node_at, sample
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


def test_preconditioned_corrector_step_against_the_closed_form_on_a_gaussian():
    # One level by hand on N(m, C): the exact score s = -(alpha^2 C + sigma^2 I)^{-1}(x - alpha m),
    # g = -sigma_now s_now (the prediction at the step's start), M = lambda (lambda I + g g^T)^{-1}
    # as a dense inverse, M^{1/2} by eigendecomposition, the "ald" step size, then
    # x' = x1 + e M s(x1) + sqrt(2 e) M^{1/2} z after the (library's) predictor step x1.
    mix, path, lam = _gaussian(), paths.VPLinear(), 0.3
    now, nxt = node_at(path, 0.6), node_at(path, 0.5)
    mean, cov, eye = mix.means[0], mix.covs[0], torch.eye(3, dtype=torch.float64)

    def score(x, node):
        cov_t = node.alpha**2 * cov + node.sigma**2 * eye
        return -torch.linalg.solve(cov_t, (x - node.alpha * mean).T).T

    def predict(x, node):
        t = torch.tensor(node.t, dtype=torch.float64)
        return Prediction(x, t, "x0", mix.denoiser(x, node.t, path), node.coeffs)

    x = torch.tensor([[0.4, -1.1, 2.0], [-0.3, 0.2, 0.5]], dtype=torch.float64)
    z = torch.tensor([[0.7, 0.1, -0.4], [1.2, -0.5, 0.3]], dtype=torch.float64)
    run = fixed_run(path, 5, 0, predict, lambda like: z)
    solver = LML(damping=lam, corrector="ald")
    out = solver.step(State(x), predict(x, now), now, nxt, run).x
    assert run.nfe == 1  # the corrector's one evaluation; g costs none

    x1 = solver.predictor.step(State(x), predict(x, now), now, nxt, run).x
    torch.testing.assert_close(mix.score(x, now.t, path), score(x, now), rtol=1e-10, atol=1e-12)
    step = 2.0 * (now.alpha / nxt.alpha) ** 2 * (solver.snr * nxt.sigma) ** 2
    for i in range(2):
        g = -now.sigma * score(x[i : i + 1], now)[0]
        m = lam * torch.linalg.inv(lam * eye + torch.outer(g, g))
        w, q = torch.linalg.eigh(m)
        m_half = q @ torch.diag(w.sqrt()) @ q.T
        s1 = score(x1[i : i + 1], nxt)[0]
        want = x1[i] + step * (m @ s1) + math.sqrt(2.0 * step) * (m_half @ z[i])
        torch.testing.assert_close(out[i], want, rtol=1e-10, atol=1e-12)
    # Along g itself the step is the score shrunk by the scalar lambda / (lambda + |g|^2): with
    # g taken at the moved point (the released code's choice), M s = s lambda / (lambda + |eps|^2).
    s1 = score(x1, nxt)
    eps1 = -nxt.sigma * s1
    shrink = lam / (lam + (eps1 * eps1).sum(1, keepdim=True))
    torch.testing.assert_close(lm_direction(s1, eps1, lam), shrink * s1, rtol=1e-10, atol=1e-12)


def test_increment_mode_is_the_released_dpm_solver_1_update():
    # kappa = 0: the identity, so it is DDIM (eta 0) exactly up to rounding, with no extra NFE.
    plain = _run({"eta": 0.0}, name="ddim")
    options = {"mode": "increment", "n_corrector": 0, "predictor_options": {"eta": 0.0}}
    same = _run(options)
    torch.testing.assert_close(same, plain, rtol=1e-9, atol=1e-9)
    # kappa > 0, the second step by hand on a Gaussian: v = x' - (alpha'/alpha) x,
    # g = kappa v_prev + (1 - kappa) v, v <- M v |v| / |M v| with M = lam (lam I + g g^T)^{-1}.
    mix, path, lam, kappa = _gaussian(), paths.VPLinear(), 0.05, 0.3
    nodes = [node_at(path, t) for t in (0.8, 0.6, 0.4)]
    eye = torch.eye(3, dtype=torch.float64)

    def predict(x, node):
        t = torch.tensor(node.t, dtype=torch.float64)
        return Prediction(x, t, "x0", mix.denoiser(x, node.t, path), node.coeffs)

    def ddim(x, now, nxt):  # noise form of DPM-Solver-1: (alpha'/alpha) x - sigma'(e^h - 1) eps
        eps = -now.sigma * mix.score(x, now.t, path)
        h = math.log(nxt.alpha / nxt.sigma) - math.log(now.alpha / now.sigma)
        return (nxt.alpha / now.alpha) * x, -nxt.sigma * math.expm1(h) * eps

    solver = LML(
        damping=lam, kappa=kappa, mode="increment", n_corrector=0, predictor_options={"eta": 0.0}
    )
    x = torch.tensor([[0.4, -1.1, 2.0], [-0.3, 0.2, 0.5]], dtype=torch.float64)
    run = fixed_run(path, 4, 0, predict, torch.zeros_like)
    first = solver.step(State(x), predict(x, nodes[0]), nodes[0], nodes[1], run)
    linear, v_prev = ddim(x, nodes[0], nodes[1])
    torch.testing.assert_close(first.x, linear + v_prev, rtol=1e-10, atol=1e-12)  # no history yet
    second = solver.step(first, predict(first.x, nodes[1]), nodes[1], nodes[2], run).x
    assert run.nfe == 0
    linear, v = ddim(first.x, nodes[1], nodes[2])
    for i in range(2):
        g = kappa * v_prev[i] + (1 - kappa) * v[i]
        mv = lam * torch.linalg.solve(lam * eye + torch.outer(g, g), v[i])
        want = linear[i] + mv * v[i].norm() / mv.norm()
        torch.testing.assert_close(second[i], want, rtol=1e-10, atol=1e-12)
        assert not torch.allclose(second[i], linear[i] + v[i])  # a real direction change
