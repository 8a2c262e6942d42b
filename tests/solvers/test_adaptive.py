"""Dormand-Prince 5(4): tableau, order, tolerance proportionality; the reference PF-ODE sampler
against the closed-form flow map of a Gaussian."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from interpolant import paths
from interpolant.data.oracles import GaussianMixture
from interpolant.predictions import Model, convert
from interpolant.solvers import adaptive
from interpolant.solvers.adaptive import dopri5_step, odeint_dopri5, odeint_rk4, reference_sample

F64 = torch.float64


def test_tableau_is_consistent() -> None:
    for c, row in zip(adaptive._C, adaptive._A):
        assert sum(row) == pytest.approx(c, abs=1e-15)  # row sums are the nodes
    b5 = adaptive._A[6]
    assert sum(b5) == pytest.approx(1.0, abs=1e-15)
    assert sum(adaptive._E) == pytest.approx(0.0, abs=1e-15)  # b5 - b4 with sum(b4) = 1
    # Order conditions of the 5th-order weights up to order 5 on the quadrature part:
    # sum b_i c_i^(k-1) = 1 / k.
    for k in range(1, 6):
        assert sum(b * c ** (k - 1) for b, c in zip(b5, adaptive._C)) == pytest.approx(
            1 / k, abs=1e-14
        )


def logistic(x: torch.Tensor, t: float) -> torch.Tensor:
    """x' = x (1 - x) cos(t): nonlinear and time dependent, solution known in closed form."""
    return x * (1 - x) * math.cos(t)


def logistic_exact(x0: torch.Tensor, t: float) -> torch.Tensor:
    e = math.exp(math.sin(t))
    return x0 * e / (1 - x0 + x0 * e)


X0 = torch.tensor([[0.1, 0.5], [0.9, 0.3]], dtype=F64)


def fixed_step_error(steps: int, t1: float = 2.0) -> float:
    h, x, t = t1 / steps, X0.clone(), 0.0
    k1 = logistic(x, t)
    for _ in range(steps):
        x, _, k1 = dopri5_step(logistic, x, t, h, k1)
        t += h
    return float((x - logistic_exact(X0, t1)).abs().max())


def test_fixed_step_order_is_five() -> None:
    errors = [fixed_step_error(n) for n in (16, 32, 64)]
    orders = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    assert orders[-1] == pytest.approx(5.0, abs=0.35), orders


def test_embedded_error_estimate_is_fourth_order_local() -> None:
    # The estimate x5 - x4 is dominated by the 4th-order local error, O(h^5).
    est = [
        float(dopri5_step(logistic, X0, 0.3, h, logistic(X0, 0.3))[1].abs().max())
        for h in (0.2, 0.1)
    ]
    assert math.log2(est[0] / est[1]) == pytest.approx(5.0, abs=0.5)


def test_rk4_order_is_four() -> None:
    errors = [
        float((odeint_rk4(logistic, X0, 0.0, 2.0, n)[0] - logistic_exact(X0, 2.0)).abs().max())
        for n in (10, 20, 40)
    ]
    assert math.log2(errors[1] / errors[2]) == pytest.approx(4.0, abs=0.3)


def test_error_is_proportional_to_tolerance() -> None:
    exact = logistic_exact(X0, 5.0)
    errors, nfes = [], []
    for tol in (1e-4, 1e-6, 1e-8, 1e-10):
        x, nfe = odeint_dopri5(logistic, X0, 0.0, 5.0, rtol=tol, atol=tol)
        errors.append(float((x - exact).abs().max()))
        nfes.append(nfe)
        assert errors[-1] < 20 * tol
    assert all(a > b for a, b in itertools.pairwise(errors))
    assert all(a < b for a, b in itertools.pairwise(nfes))
    # NFE grows like tol^(-1/5): a factor of 100 in tol costs about 100^(1/5) = 2.5x steps.
    assert 1.5 < nfes[-1] / nfes[-2] < 4.0


def test_backwards_in_time_and_shared_step_size() -> None:
    # Integrate back from t = 4 to t = 0; samples on very different scales all meet the tolerance.
    x4 = logistic_exact(X0, 4.0)
    x, _ = odeint_dopri5(logistic, x4, 4.0, 0.0, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(x, X0, rtol=1e-7, atol=0)
    lam = torch.tensor([[-1.0], [-30.0]], dtype=F64)
    y, _ = odeint_dopri5(
        lambda x, t: lam * x, torch.ones(2, 1, dtype=F64), 0.0, 1.0, rtol=1e-9, atol=1e-20
    )
    torch.testing.assert_close(y, torch.exp(lam), rtol=1e-7, atol=0)


def test_edge_cases_and_errors() -> None:
    x, nfe = odeint_dopri5(logistic, X0, 1.0, 1.0)
    assert nfe == 0 and torch.equal(x, X0)
    with pytest.raises(ValueError, match="rtol and atol"):
        odeint_dopri5(logistic, X0, 0.0, 1.0, rtol=0.0)
    with pytest.raises(RuntimeError, match="max_steps"):
        odeint_dopri5(logistic, X0, 0.0, 100.0, rtol=1e-12, atol=1e-12, max_steps=5)
    with pytest.raises(ValueError, match="steps must be"):
        odeint_rk4(logistic, X0, 0.0, 1.0, 0)


# The reference probability-flow sampler ----------------------------------------------------------


def gaussian(
    eigenvalues: list[float],
) -> tuple[GaussianMixture, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    d = len(eigenvalues)
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=F64))
    lam = torch.tensor(eigenvalues, dtype=F64)
    mu = torch.linspace(-1.0, 2.0, d, dtype=F64)
    return GaussianMixture(mu[None], (Q @ torch.diag(lam) @ Q.T)[None]), mu, Q, lam


def flow_map(path: paths.GaussianPath, t: float, x_t: torch.Tensor, mu, Q, lam) -> torch.Tensor:
    """The PF-ODE map of N(mu, C) from t to 0: x_0 = mu + A (x_t - alpha mu),
    A = Q diag(sqrt(lam / (alpha^2 lam + sigma^2))) Q^T."""
    tt = torch.tensor(t, dtype=F64)
    a, s = float(path.alpha(tt)), float(path.sigma(tt))
    A = Q @ torch.diag(torch.sqrt(lam / (a * a * lam + s * s))) @ Q.T
    return mu + (x_t - a * mu) @ A.T


CASES = [
    (paths.Linear(), 1.0),
    (paths.VPLinear(), 1.0),
    (paths.VPCosine(), 1.0),
    (paths.EDM(), 1.0),
    (paths.VE(), 1.0),
    (paths.Trig(), 1.0),
    (paths.VPLinear(), 0.6),
    (paths.Linear(), 0.3),
    (paths.OneSided("trig", "brownian"), 1.0),
    (paths.get_path("discrete-vp"), 1.0),
]


@pytest.mark.parametrize("path,t_max", CASES, ids=[f"{p!r}-{t}" for p, t in CASES])
def test_reference_sample_is_the_exact_flow_map(path: paths.GaussianPath, t_max: float) -> None:
    # One direction of std 1e-2 (variance 1e-4) makes the ODE stiff in t near t = 0.
    oracle, mu, Q, lam = gaussian([1e-4, 0.3, 2.0])
    noise = torch.randn(5, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    x0, nfe = reference_sample(oracle.model(path), noise, t_max=t_max, return_nfe=True)
    sigma_max = float(path.sigma(torch.tensor(t_max, dtype=F64)))
    exact = flow_map(path, t_max, sigma_max * noise, mu, Q, lam)
    torch.testing.assert_close(x0, exact, rtol=0, atol=1e-8)
    assert nfe < 1500


@pytest.mark.parametrize(
    "kind,path", [("velocity", paths.Linear()), ("eps", paths.VPLinear()), ("v", paths.VPCosine())]
)
def test_reference_sample_for_every_prediction_kind(kind: str, path: paths.GaussianPath) -> None:
    oracle, mu, Q, lam = gaussian([0.01, 0.5])

    def net(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return convert(oracle.denoiser(x, t, path), "x0", kind, x, t, path)

    noise = torch.randn(4, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
    x0 = reference_sample(Model(net, path, predicts=kind), noise, t_max=0.999)
    sigma_max = float(path.sigma(torch.tensor(0.999, dtype=F64)))
    torch.testing.assert_close(
        x0, flow_map(path, 0.999, sigma_max * noise, mu, Q, lam), rtol=0, atol=1e-8
    )


def test_reference_sample_converges_with_rtol() -> None:
    path = paths.VPLinear()
    oracle, mu, Q, lam = gaussian([1e-3, 0.2, 1.5])
    noise = torch.randn(6, 3, generator=torch.Generator().manual_seed(3), dtype=F64)
    exact = flow_map(path, 1.0, float(path.sigma(torch.tensor(1.0, dtype=F64))) * noise, mu, Q, lam)
    errors, nfes = [], []
    for tol in (1e-3, 1e-5, 1e-7, 1e-9):
        x0, nfe = reference_sample(oracle.model(path), noise, rtol=tol, atol=tol, return_nfe=True)
        errors.append(float((x0 - exact).abs().max()))
        nfes.append(nfe)
        assert errors[-1] < 50 * tol
    assert all(a > b for a, b in itertools.pairwise(errors)), errors
    assert all(a < b for a, b in itertools.pairwise(nfes)), nfes


def test_reference_sample_validates() -> None:
    with pytest.raises(TypeError, match=r"interpolant\.Model"):
        reference_sample(lambda x, t: x, torch.zeros(1, 2))  # type: ignore[arg-type]
    oracle, *_ = gaussian([1.0])
    with pytest.raises(ValueError, match="t_max"):
        reference_sample(oracle.model(paths.Linear()), torch.zeros(1, 1), t_max=0.0)
