"""Stochastic interpolants: coefficients, exact Gaussian fields, objectives and their minimisers,
the antithetic estimator, the ODE/SDE sampler and the one-sided Gaussian path."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant.data.oracles import GaussianMixture
from interpolant.paths.interpolant import (
    GAMMAS,
    INTERPOLANTS,
    GaussianEndpoints,
    Interpolant,
    OneSided,
)
from interpolant.solvers import FunctionHook, Trajectory
from interpolant.solvers.adaptive import odeint_dopri5
from interpolant.solvers.bridge import sample_bridge
from interpolant.solvers.sde import SDEEuler

F64 = torch.float64
COMBOS = [(i, g) for i in INTERPOLANTS for g in GAMMAS if (i, g) != ("encoder-decoder", "zero")]
M0 = torch.tensor([1.0, -0.5], dtype=F64)
S0 = torch.tensor([[0.5, 0.2], [0.2, 0.3]], dtype=F64)
M1 = torch.tensor([-1.0, 1.0], dtype=F64)
S1 = torch.tensor([[0.4, -0.1], [-0.1, 0.6]], dtype=F64)


def endpoints(interp: Interpolant) -> GaussianEndpoints:
    return GaussianEndpoints(interp, M0, S0, M1, S1)


def draw(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x0, x1, z) for the Gaussian endpoints above."""
    g = torch.Generator().manual_seed(seed)
    l0, l1 = torch.linalg.cholesky(S0), torch.linalg.cholesky(S1)
    x0 = M0 + torch.randn(n, 2, generator=g, dtype=F64) @ l0.T
    x1 = M1 + torch.randn(n, 2, generator=g, dtype=F64) @ l1.T
    return x0, x1, torch.randn(n, 2, generator=g, dtype=F64)


@pytest.mark.parametrize("kind,gamma", COMBOS)
def test_coefficients_end_points_and_derivatives(kind: str, gamma: str) -> None:
    interp = Interpolant(kind, gamma, a=1.5)
    ends = torch.tensor([0.0, 1.0], dtype=F64)
    torch.testing.assert_close(interp.alpha(ends), torch.tensor([1.0, 0.0], dtype=F64))
    torch.testing.assert_close(interp.beta(ends), torch.tensor([0.0, 1.0], dtype=F64))
    assert torch.equal(interp.gamma(ends), torch.zeros(2, dtype=F64))
    # gamma gamma' is finite at the ends (a / 2 and -a / 2 for the Brownian gamma, else 0).
    expected = [0.75, -0.75] if gamma == "brownian" else [0.0, 0.0]
    torch.testing.assert_close(interp.gamma_d_gamma(ends), torch.tensor(expected, dtype=F64))
    t = torch.linspace(0.01, 0.99, 99, dtype=F64)
    if kind == "encoder-decoder":
        t = t[(t - 0.5).abs() > 0.015]  # alpha, beta are C^1 but piecewise there
    if gamma != "zero":
        assert bool((interp.gamma(t) > 0).all())
    tg = t.clone().requires_grad_(True)
    for value, derivative in (
        (interp.alpha, interp.d_alpha),
        (interp.beta, interp.d_beta),
        (interp.gamma, interp.d_gamma),
    ):
        (auto,) = torch.autograd.grad((value(tg) + 0 * tg).sum(), tg)
        torch.testing.assert_close(derivative(t), auto, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(interp.gamma_d_gamma(t), interp.gamma(t) * interp.d_gamma(t))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="interpolant must be one of"):
        Interpolant("cubic")
    with pytest.raises(ValueError, match="gamma_kind must be one of"):
        Interpolant("linear", "sigmoid")
    with pytest.raises(ValueError, match=r"Interpolant: a must be a finite number > 0"):
        Interpolant("linear", a=0.0)
    with pytest.raises(ValueError, match="needs gamma"):
        Interpolant("encoder-decoder", "zero")
    with pytest.raises(ValueError, match="not strictly decreasing"):
        OneSided("encoder-decoder", "sin2")
    interp = Interpolant()
    x0, x1, z = draw(4, 0)
    with pytest.raises(ValueError, match="field must be one of"):
        interp.objective("drift", lambda x, t: x, x0, x1, torch.full((4,), 0.5), z)
    with pytest.raises(ValueError, match="one time per sample"):
        interp.objective("eta", lambda x, t: x, x0, x1, torch.tensor(0.5), z)
    with pytest.raises(ValueError, match="t must lie in"):
        interp.sample_xt(x0, x1, 1.2, z)


@pytest.mark.parametrize(
    "kind,gamma", [("linear", "brownian"), ("trig", "sin2"), ("encoder-decoder", "quadratic")]
)
def test_marginal_of_samples(kind: str, gamma: str) -> None:
    interp, n = Interpolant(kind, gamma), 100_000
    x0, x1, z = draw(n, 1)
    for t in (0.25, 0.5, 0.8):
        xt = interp.sample_xt(x0, x1, t, z)
        mean, cov = endpoints(interp).marginal(t)
        torch.testing.assert_close(xt.mean(0), mean, atol=0.012, rtol=0)
        torch.testing.assert_close(torch.cov(xt.T), cov, atol=0.015, rtol=0)
        plus, minus = interp.antithetic(x0, x1, t, z)
        torch.testing.assert_close(plus, xt)
        torch.testing.assert_close(0.5 * (plus + minus), interp.sample_xt(x0, x1, t, 0 * z))


@pytest.mark.parametrize(
    "kind,gamma", [("linear", "brownian"), ("trig", "quadratic"), ("linear", "zero")]
)
def test_exact_fields_score_and_transport(kind: str, gamma: str) -> None:
    interp = Interpolant(kind, gamma)
    oracle = endpoints(interp)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, 2, generator=g, dtype=F64)
    t = torch.linspace(0.05, 0.95, 6, dtype=F64)

    def log_density(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        moments = [oracle.marginal(ti) for ti in t]
        return torch.stack(
            [
                torch.distributions.MultivariateNormal(m, c).log_prob(xi)
                for xi, (m, c) in zip(x, moments)
            ]
        )

    xg, tg = x.clone().requires_grad_(True), t.clone().requires_grad_(True)
    d_x, d_t = torch.autograd.grad(log_density(xg, tg).sum(), (xg, tg))
    score = oracle.score(x, t)
    torch.testing.assert_close(score, d_x)
    torch.testing.assert_close(oracle.eta(x, t), -interp.gamma(t)[:, None] * score)
    if gamma != "zero":
        torch.testing.assert_close(interp.score_from_eta(oracle.eta(x, t), x, t), score)
    # Transport equation of the velocity: d/dt log rho + div b + b . grad log rho = 0.
    b = oracle.velocity(xg, t)
    div = sum(torch.autograd.grad(b[:, i].sum(), xg, retain_graph=True)[0][:, i] for i in range(2))
    torch.testing.assert_close(
        d_t + div + (b * score).sum(1), torch.zeros(6, dtype=F64), atol=1e-10, rtol=0
    )


def linear_fit(interp: Interpolant, field: str, antithetic: bool, t: float, n: int) -> torch.Tensor:
    """Minimise the mean objective over affine maps f(x) = W x + c: one Newton step is exact."""
    x0, x1, z = draw(n, 3)
    tt = torch.full((n,), t, dtype=F64)

    def mean_loss(theta: torch.Tensor) -> torch.Tensor:
        W, c = theta[:4].reshape(2, 2), theta[4:]
        return interp.objective(field, lambda x, _t: x @ W.T + c, x0, x1, tt, z, antithetic).mean()

    theta0 = torch.zeros(6, dtype=F64)
    grad = torch.autograd.functional.jacobian(mean_loss, theta0)
    hess = torch.autograd.functional.hessian(mean_loss, theta0)
    return theta0 - torch.linalg.solve(hess, grad)


@pytest.mark.parametrize("antithetic", [False, True])
@pytest.mark.parametrize("field", ["velocity", "eta", "score"])
def test_objective_minimiser_is_the_exact_field(field: str, antithetic: bool) -> None:
    interp, t = Interpolant("linear", "brownian"), 0.3
    oracle = endpoints(interp)
    exact_field = {"velocity": oracle.velocity, "eta": oracle.eta, "score": oracle.score}[field]
    # The exact field is affine: read off W and c.
    c = exact_field(torch.zeros(1, 2, dtype=F64), t)[0]
    W = (exact_field(torch.eye(2, dtype=F64), t) - c).T
    theta = linear_fit(interp, field, antithetic, t, 40_000)
    torch.testing.assert_close(theta[:4].reshape(2, 2), W, atol=0.05, rtol=0)
    torch.testing.assert_close(theta[4:], c, atol=0.05, rtol=0)


@pytest.mark.parametrize("field", ["velocity", "score"])
def test_antithetic_estimator_is_unbiased_with_less_variance(field: str) -> None:
    interp, t, n = Interpolant("linear", "brownian"), 0.02, 200_000
    A = torch.tensor([[0.3, 0.1], [-0.2, 0.5]], dtype=F64)
    c = torch.tensor([0.1, -0.2], dtype=F64)
    x0, x1, z = draw(n, 4)
    tt = torch.full((n,), t, dtype=F64)

    def fn(x: torch.Tensor, _t: torch.Tensor) -> torch.Tensor:
        return x @ A.T + c

    plain = interp.objective(field, fn, x0, x1, tt, z)
    anti = interp.objective(field, fn, x0, x1, tt, z, antithetic=True)
    # Closed-form expectation of the objective for this fixed affine field.
    mean, cov = endpoints(interp).marginal(t)
    tq = torch.tensor(t, dtype=F64)
    half_square = 0.5 * torch.trace(A @ cov @ A.T) + 0.5 * (A @ mean + c).square().sum()
    if field == "score":
        expected = half_square + torch.trace(A)  # E[z . A (gamma z)] / gamma = tr A
    else:
        a, b, _, da, db, _ = interp.coefficients(tq)
        cross = a * da * S0 + b * db * S1 + interp.gamma_d_gamma(tq) * torch.eye(2, dtype=F64)
        d_mean = da * M0 + db * M1
        expected = half_square - torch.trace(A @ cross) - d_mean @ (A @ mean + c)
    for estimate in (plain, anti):
        se = float(estimate.std()) / math.sqrt(n)
        assert abs(float(estimate.mean() - expected)) < 5 * se + 1e-12
    # The z / gamma (score) and gamma' z (velocity) terms cancel to first order in gamma z; the
    # velocity keeps the variance of d_alpha x0 + d_beta x1.
    ratio = float(anti.var() / plain.var())
    assert ratio < (0.1 if field == "score" else 0.5), ratio


def test_one_sided_interpolant_is_the_gaussian_path() -> None:
    # x1 ~ N(0, I): the bridge oracle and the Gaussian-mixture oracle on OneSided agree.
    interp = Interpolant("trig", "brownian", a=0.5)
    path = interp.gaussian_path()
    oracle = GaussianEndpoints(interp, M0, S0, torch.zeros(2, dtype=F64), torch.eye(2, dtype=F64))
    mixture = GaussianMixture(M0[None], S0[None])
    g = torch.Generator().manual_seed(5)
    x = torch.randn(7, 2, generator=g, dtype=F64)
    t = torch.linspace(0.05, 0.95, 7, dtype=F64)
    torch.testing.assert_close(oracle.velocity(x, t), mixture.velocity(x, t, path))
    torch.testing.assert_close(oracle.score(x, t), mixture.score(x, t, path))
    assert path.config() == {
        "name": "one-sided",
        "interpolant": "trig",
        "gamma": "brownian",
        "a": 0.5,
    }


def test_interpolant_config_round_trip_and_equality() -> None:
    interp = Interpolant("trig", "sin2", a=0.5)
    assert interp.config() == {
        "name": "interpolant",
        "interpolant": "trig",
        "gamma_kind": "sin2",
        "a": 0.5,
    }
    assert Interpolant.from_config(interp.config()) == interp
    # Configs written before the field was named gamma_kind.
    old = {"name": "interpolant", "interpolant": "trig", "gamma": "sin2", "a": 0.5}
    assert Interpolant.from_config(old) == interp
    assert interp.gaussian_path() == OneSided("trig", "sin2", 0.5) != OneSided("trig")
    assert repr(interp) == "Interpolant(interpolant='trig', gamma_kind='sin2', a=0.5)"


def test_ode_sampler_transports_and_converges() -> None:
    interp = Interpolant("linear", "brownian")
    oracle = endpoints(interp)
    _, x1, _ = draw(20_000, 6)
    x = sample_bridge(oracle.velocity, x1, solver="heun", steps=50).x
    torch.testing.assert_close(x.mean(0), M0, atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), S0, atol=0.02, rtol=0)
    # Against an adaptive reference of the same ODE: Euler is first order, Heun second.
    few = x1[:8]
    ref, _ = odeint_dopri5(
        lambda y, s: oracle.velocity(y, s), few, 1.0, 0.0, rtol=1e-11, atol=1e-11
    )
    for method, order in (("euler", 1), ("heun", 2)):
        errors = [
            float((sample_bridge(oracle.velocity, few, solver=method, steps=n).x - ref).abs().max())
            for n in (20, 40)
        ]
        assert math.log2(errors[0] / errors[1]) == pytest.approx(order, abs=0.25)


def test_sde_sampler_transports_and_the_sign_matters() -> None:
    interp = Interpolant("linear", "brownian")
    oracle = endpoints(interp)
    _, x1, _ = draw(20_000, 7)

    def run(eps, score) -> torch.Tensor:
        return sample_bridge(
            oracle.velocity, x1, solver=SDEEuler(eps=eps), steps=200, score=score, seed=0
        ).x

    x = run(0.5, oracle.score)
    torch.testing.assert_close(x.mean(0), M0, atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), S0, atol=0.03, rtol=0)
    # A time-dependent eps(t) as well.
    x = run(lambda t: 2 * t * (1 - t), oracle.score)
    torch.testing.assert_close(x.mean(0), M0, atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), S0, atol=0.03, rtol=0)
    # The opposite sign of the score term (the forward SDE's) does not give the data law.
    wrong = run(0.5, lambda y, s: -oracle.score(y, s))
    assert float((torch.cov(wrong.T) - S0).abs().max()) > 0.2


def test_sde_sampler_is_batch_invariant_and_validates() -> None:
    oracle = endpoints(Interpolant())
    _, x1, _ = draw(6, 8)
    kwargs = dict(solver={"name": "sde_euler", "eps": 1.0}, score=oracle.score, seed=11)
    full = sample_bridge(oracle.velocity, x1, steps=20, **kwargs)
    part = sample_bridge(oracle.velocity, x1[:2], steps=20, **kwargs)
    assert torch.equal(full.x[:2], part.x)
    # Rows numbered 4, 5 draw the noise of samples 4 and 5 in any batch.
    rows = sample_bridge(oracle.velocity, x1[4:], steps=20, index=[4, 5], **kwargs)
    assert torch.equal(full.x[4:], rows.x)
    # One evaluation of b and one of s per step.
    assert full.nfe == 40
    grid = torch.linspace(1.0, 0.0, 21, dtype=F64)
    listed = sample_bridge(oracle.velocity, x1, grid=grid, **kwargs)
    torch.testing.assert_close(listed.x, full.x)
    with pytest.raises(ValueError, match="needs score="):
        sample_bridge(oracle.velocity, x1, solver="sde_euler", steps=5)
    with pytest.raises(ValueError, match="euler, heun or sde_euler"):
        sample_bridge(oracle.velocity, x1, solver="dpmpp_2m", steps=5)
    with pytest.raises(ValueError, match="not nfe="):
        sample_bridge(oracle.velocity, x1, nfe=5)
    with pytest.raises(ValueError, match="no noise levels"):
        sample_bridge(oracle.velocity, x1, steps=5, grid="karras")
    with pytest.raises(ValueError, match="nfe= or steps="):
        sample_bridge(oracle.velocity, x1)
    with pytest.raises(ValueError, match="strictly decrease"):
        sample_bridge(oracle.velocity, x1, grid=[0.0, 1.0])
    with pytest.raises(ValueError, match="cannot call"):
        sample_bridge(oracle.velocity, x1, steps=5, hooks=[FunctionHook(on_prediction=print)])


def test_bridge_hooks_see_every_step_and_heun_counts_two_calls() -> None:
    oracle = endpoints(Interpolant("trig", "quadratic"))
    _, x1, _ = draw(5, 9)
    traj = Trajectory()
    seen: list[float] = []

    def record(x_state, step, run):
        seen.append(step.nxt.t)
        return x_state

    result = sample_bridge(oracle.velocity, x1, steps=4, hooks=[traj, FunctionHook(on_step=record)])
    recording = result.state(traj)
    assert recording.times == [1.0, 0.75, 0.5, 0.25, 0.0] and seen == recording.times[1:]
    assert torch.equal(recording.states[0], x1) and torch.equal(recording.states[-1], result.x)
    assert result.nfe == 8  # Heun corrects at every step, the last one included
    # A step hook changes the state the next step starts from.
    shifted = sample_bridge(
        oracle.velocity,
        x1,
        solver="euler",
        steps=1,
        hooks=[FunctionHook(on_step=lambda s, step, run: s.replace(x=s.x + 1.0))],
    )
    plain = sample_bridge(oracle.velocity, x1, solver="euler", steps=1)
    torch.testing.assert_close(shifted.x, plain.x + 1.0)
