"""Stochastic solvers on exact Gaussian-mixture oracles: they reproduce the data marginal, a
wrong drift does not, sample i does not depend on the batch, and the SDE step is the formula."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant import paths
from interpolant.data.oracles import GaussianMixture
from interpolant.metrics.distances import sliced_wasserstein
from interpolant.predictions import Prediction
from interpolant.solvers import FunctionHook, State, fixed_run, get_solver, node_at, sample


def _three_modes() -> GaussianMixture:
    """Three separated 2-D modes of unequal weights and widths."""
    means = torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]], dtype=torch.float64)
    covs = torch.stack([torch.eye(2, dtype=torch.float64) * s**2 for s in (0.3, 0.4, 0.5)])
    return GaussianMixture(means, covs, torch.tensor([0.5, 0.3, 0.2]))


@pytest.fixture(scope="module")
def oracle():
    gm = _three_modes()
    exact = gm.sample(4000, torch.Generator().manual_seed(1))
    noise = torch.randn(2000, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    return gm, exact, noise


def _flip_score(pred, node, ctx):
    """A prediction hook giving the SDE the wrong sign of its score term (a negative control)."""
    return pred.override(score=-pred.score)


# Sliced W2 between two exact draws of these sizes is 0.06-0.08 (the noise floor); the samplers
# below measure 0.06-0.11 and the wrong drift sign 2.8 (eps = 0.5) and 16 (eps = 1).
THRESHOLD = 0.2
MARGINAL_CASES = [
    ("sde_euler", {"eps": 0.5}, 250),
    ("sde_euler", {"eps": 1.0}, 250),
    ("sde_euler", {"g": lambda t: math.sqrt(2.0) * t}, 250),  # eps = g^2 / 2 = t^2
    ("dpmpp_2m_sde", {}, 100),
    ("ddim", {"eta": 1.0}, 200),
    ("pc", {"corrector": "ald"}, 100),
    ("pc", {"corrector": "ald", "predictor": "sde_euler", "n_corrector": 2}, 100),
]


@pytest.mark.parametrize(("solver", "options", "steps"), MARGINAL_CASES)
def test_reproduces_the_data_marginal(oracle, solver, options, steps):
    gm, exact, noise = oracle
    path = paths.Linear()
    torch.manual_seed(0)  # the global generator: per-sample generators are slow for 2000 samples
    x = sample(
        gm.model(path),
        noise,
        solver={"name": solver, **(options or {})},
        steps=steps,
        grid="uniform",
    ).x
    distance = float(sliced_wasserstein(x, exact))
    weights = gm.posterior_weights(x, 0.0, path).mean(0)
    assert distance < THRESHOLD, f"{solver} {options}: sliced W2 {distance:.3f}"
    torch.testing.assert_close(weights, gm.weights, atol=0.03, rtol=0)


@pytest.mark.parametrize("eps", [0.5, 1.0])
def test_wrong_drift_sign_fails_the_marginal_check(oracle, eps):
    gm, exact, noise = oracle
    torch.manual_seed(0)
    x = sample(
        gm.model(paths.Linear()),
        noise,
        solver={"name": "sde_euler", "eps": eps},
        steps=250,
        grid="uniform",
        hooks=[FunctionHook(on_prediction=_flip_score)],
    ).x
    assert float(sliced_wasserstein(x, exact)) > 4 * THRESHOLD


def test_pc_langevin_reproduces_modes_in_32_dimensions():
    # The default corrector (score_sde's LangevinCorrector, per-sample norms) in a dimension
    # where ||z|| and ||s|| concentrate: mode weights and per-mode spreads of the data.
    d, path = 32, paths.Linear()
    means = torch.randn(3, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.6
    stds = torch.tensor([0.3, 0.4, 0.5], dtype=torch.float64)
    covs = torch.stack([torch.eye(d, dtype=torch.float64) * s**2 for s in stds])
    gm = GaussianMixture(means, covs, torch.tensor([0.5, 0.3, 0.2]))
    noise = torch.randn(1000, d, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    torch.manual_seed(0)
    result = sample(gm.model(path), noise, solver="pc", steps=100, grid="uniform")
    assert result.nfe == 199  # 100 predictor steps + 99 corrector steps
    mode = gm.posterior_weights(result.x, 0.0, path).argmax(1)
    weights = torch.bincount(mode, minlength=3) / mode.numel()
    spreads = torch.stack([(result.x[mode == k] - means[k]).pow(2).mean().sqrt() for k in range(3)])
    torch.testing.assert_close(weights.to(torch.float64), gm.weights, atol=0.04, rtol=0)
    torch.testing.assert_close(spreads, stds, rtol=0.1, atol=0)


STOCHASTIC = [
    ("ddim", {"eta": 1.0}),
    ("ddim", {"eta": 0.5}),
    ("heun", {"s_churn": 10.0}),
    ("dpmpp_2m_sde", {}),
    ("sde_euler", {"eps": 1.0}),
    ("pc", {}),
    ("pc", {"corrector": "ald", "n_corrector": 2}),
]


@pytest.mark.parametrize(("solver", "options"), STOCHASTIC)
def test_sample_does_not_depend_on_the_batch(solver, options):
    gm = _three_modes()
    model = gm.model(paths.VPLinear())
    noise = torch.randn(5, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    kwargs = {"solver": {"name": solver, **options}, "steps": 8}
    batch = sample(model, noise, seed=10, **kwargs).x
    for i in (0, 3):
        alone = sample(model, noise[i : i + 1], seed=10, index=[i], **kwargs).x
        torch.testing.assert_close(alone[0], batch[i], rtol=1e-12, atol=1e-12)
    # ... and the noise matters: another seed gives another sample.
    assert not torch.allclose(sample(model, noise, seed=11, **kwargs).x, batch)


def test_sde_euler_step_is_the_formula_with_decoupled_fields():
    # x' = x - (u - eps s) dt + sqrt(2 eps dt) z with u and s read separately from the
    # prediction, so Prediction.override(velocity=...) keeps the score it was given.
    path = paths.Linear()
    now, nxt = node_at(path, 0.6), node_at(path, 0.5)
    x = torch.tensor([[0.3, -1.2]], dtype=torch.float64)
    pred = Prediction(x, now.t, "x0", torch.tensor([[1.0, 0.5]], dtype=torch.float64), now.coeffs)
    u = torch.tensor([[2.0, -3.0]], dtype=torch.float64)
    decoupled = pred.override(velocity=u)
    z = torch.tensor([[0.7, 0.1]], dtype=torch.float64)
    ctx = fixed_run(path, 10, 0, lambda x, node: pred, lambda like: z)
    eps_of_t = lambda t: 0.5 + t  # noqa: E731
    out = get_solver("sde_euler", eps=eps_of_t).step(State(x), decoupled, now, nxt, ctx)
    eps, dt = eps_of_t(0.6), 0.1
    want = x - (u - eps * pred.score) * dt + math.sqrt(2 * eps * dt) * z
    torch.testing.assert_close(out.x, want, rtol=1e-14, atol=1e-14)
    # The final step to t = 0 is the deterministic probability-flow Euler step.
    last = get_solver("sde_euler", eps=1.0).step(State(x), decoupled, now, node_at(path, 0.0), ctx)
    torch.testing.assert_close(last.x, x - 0.6 * u, rtol=1e-14, atol=1e-14)


def test_sde_euler_rejects_a_negative_eps_at_run_time():
    model = _three_modes().model(paths.Linear())
    with pytest.raises(ValueError, match=r"eps\(t\) must be a finite number >= 0"):
        sample(
            model,
            torch.zeros(2, 2),
            solver={"name": "sde_euler", "eps": lambda t: t - 0.6},
            steps=4,
            grid="uniform",
        )


@pytest.mark.parametrize(
    ("solver", "options"),
    [
        ("pc", {}),
        ("pc", {"n_corrector": 3}),
        ("pc", {"n_corrector": 0}),
        ("heun", {}),
        ("dpmpp_3m", {}),
    ],
)
def test_nfe_bookkeeping_matches_the_model_calls(solver, options):
    model = _three_modes().model(paths.VPLinear())
    obj = get_solver(solver, **options)
    for nfe in (3, 7, 12):
        result = sample(model, torch.zeros(2, 2), solver=obj, nfe=nfe, seed=0)
        steps = obj.steps_for_nfe(nfe)
        assert result.nfe == obj.nfe_for_steps(steps) <= nfe < obj.nfe_for_steps(steps + 1)


def test_heun_churn_is_finite_on_a_path_with_alpha_zero_at_t1():
    """On the linear path alpha(1) = 0: no churn at the first node (there is no noise to add),
    churn at the later ones, and the result is finite."""
    model = _three_modes().model(paths.Linear())
    noise = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = sample(
        model, noise, solver={"name": "heun", "s_churn": 10.0}, steps=8, grid="uniform", seed=0
    ).x
    plain = sample(model, noise, solver="heun", steps=8, grid="uniform").x
    assert torch.isfinite(x).all()
    assert not torch.allclose(x, plain)
