"""Inverse-problem solvers against exact answers: data consistency is exact, and DPS / RED-diff
land closer to the exact posterior of a Gaussian mixture than the prior does."""

from __future__ import annotations

import itertools

import pytest
import torch

from interpolant.data.oracles import GaussianMixture
from interpolant.inverse.base import TapedModel, detached
from interpolant.inverse.operators import Inpaint, RandomProjection, make_operator, random_mask
from interpolant.inverse.posterior import mixture_posterior, posterior_error
from interpolant.inverse.solvers import (
    ANCESTRAL as DPS_SAMPLER,
)
from interpolant.inverse.solvers import (
    DPS,
    RED_WEIGHTINGS,
    DataConsistency,
    dps,
    red_diff,
    repaint,
    repaint_schedule,
    solve,
)
from interpolant.paths import get_path
from interpolant.predictions import Evaluations, Model
from interpolant.randomness import Streams
from interpolant.solvers import FunctionHook, fixed_run, node_at, sample
from interpolant.solvers.dpm import DDIM


def _prior(d: int = 8, k: int = 4, seed: int = 0) -> GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    means = 2 * torch.randn(k, d, generator=g, dtype=torch.float64)
    f = torch.randn(k, d, 2, generator=g, dtype=torch.float64) * 0.4
    return GaussianMixture(means, f @ f.mT + 0.01 * torch.eye(d, dtype=torch.float64))


@pytest.mark.parametrize("where", ["x0", "state"])
@pytest.mark.parametrize("spec", ["inpaint-random:0.5", "mri:2", "project:20"])
def test_hard_data_consistency_is_exact(where: str, spec: str) -> None:
    op = make_operator(spec, (1, 6, 6) if spec.startswith("mri") else (36,))
    prior = _prior(36, 3)
    model = prior.model(get_path("vp"))
    x = prior.sample(3, torch.Generator().manual_seed(1))
    x = x.reshape(3, *op.x_shape)
    y = op(x)
    flat = model if op.x_shape == (36,) else _reshaped(prior, op.x_shape)
    out = solve(flat, op, y, "dc", nfe=12, where=where)
    assert float((op(out.x) - y).abs().max()) < 1e-9 and out.nfe == 12


def _reshaped(prior: GaussianMixture, shape: tuple[int, ...]):
    path = get_path("vp")

    def net(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return prior.denoiser(x.reshape(x.shape[0], -1), t, path).reshape(x.shape)

    return Model(net, path, "x0")


def test_repaint_schedule_and_exact_known_region() -> None:
    visited = repaint_schedule(20, jump_length=5, resamples=3)
    moves = [b - a for a, b in itertools.pairwise(visited)]
    assert visited[0] == 0 and visited[-1] == 20 and set(moves) == {1, -1}
    # 3 jump points (r = 0, 5, 10) with 2 extra passes of 5 steps each.
    assert moves.count(1) == 20 + 3 * 2 * 5 and moves.count(-1) == 3 * 2 * 5
    prior = _prior(16, 3)
    op = Inpaint(random_mask((16,), 0.5, seed=2))
    x = prior.sample(2, torch.Generator().manual_seed(3))
    noise = torch.randn(2, 16, dtype=torch.float64)
    out = repaint(
        prior.model(get_path("vp")), op, op(x), noise, steps=10, jump_length=3, resamples=2
    )
    torch.testing.assert_close(op(out.x), op(x))
    # NFE: one evaluation per down move of the schedule.
    schedule = repaint_schedule(10, jump_length=3, resamples=2)
    assert out.nfe == sum(b > a for a, b in itertools.pairwise(schedule))


def _posterior_errors(method: str, **options) -> tuple[float, float]:
    prior = _prior()
    model = prior.model(get_path("vp"))
    op = RandomProjection((8,), 4, noise_std=0.1, seed=3)
    x = prior.sample(6, torch.Generator().manual_seed(4))
    y = op.measure(x, seed=50)
    post = mixture_posterior(prior, op, y)
    n = 4
    out = solve(model, op, y.repeat_interleave(n, 0), method, seed=0, **options).x
    err = posterior_error(out.reshape(6, n, 8), post)["expected_rmse"]
    prior_only = prior.sample(6 * n, torch.Generator().manual_seed(5)).reshape(6, n, 8)
    return err, posterior_error(prior_only, post)["expected_rmse"]


def test_dps_beats_the_prior_on_the_exact_posterior() -> None:
    err, prior_err = _posterior_errors("dps", nfe=50)
    assert err < 0.5 * prior_err


def test_red_diff_beats_the_prior_on_the_exact_posterior() -> None:
    err, prior_err = _posterior_errors("red_diff", steps=50)
    assert err < 0.5 * prior_err


def test_red_diff_regulariser_gradient_is_red() -> None:
    # With w = sigma/alpha, lam w (eps_hat - eps) = lam (mu - x0_hat(alpha mu + sigma eps)).
    prior = _prior()
    path = get_path("vp")
    model = prior.model(path)
    mu = prior.sample(3, torch.Generator().manual_seed(6))
    eps = torch.randn(3, 8, dtype=torch.float64)
    t = 0.4
    alpha, sigma = (float(c) for c in path.coefficients(torch.tensor([t], dtype=torch.float64))[:2])
    pred = model(alpha * mu + sigma * eps, t)
    lhs = RED_WEIGHTINGS["linear"](sigma / alpha) * (pred.eps - eps)
    torch.testing.assert_close(lhs, mu - pred.x0)


def test_red_diff_without_regulariser_fits_the_data() -> None:
    prior = _prior()
    op = RandomProjection((8,), 4, seed=1)
    y = op(prior.sample(2, torch.Generator().manual_seed(7)))
    out = red_diff(
        prior.model(get_path("vp")),
        op,
        y,
        steps=300,
        lam=0.0,
        lr=0.05,
        init=torch.zeros(2, 8, dtype=torch.float64),
    )
    assert float((op(out.x) - y).norm() / y.norm()) < 1e-2 and out.nfe == 300


def test_dps_is_batch_invariant_and_zeta_zero_is_the_prior_sampler() -> None:
    prior = _prior()
    model = prior.model(get_path("vp"))
    op = RandomProjection((8,), 4, noise_std=0.1, seed=3)
    y = op(prior.sample(3, torch.Generator().manual_seed(8)))
    noise = torch.randn(3, 8, dtype=torch.float64)
    both = dps(model, op, y, noise, nfe=10, seed=0)
    one = dps(model, op, y[1:2], noise[1:2], nfe=10, seed=0, index=[1])
    torch.testing.assert_close(both.x[1:2], one.x)
    # Without a noise the start is drawn per sample too.
    torch.testing.assert_close(
        dps(model, op, y, nfe=10, seed=4).x[2:], dps(model, op, y[2:], nfe=10, seed=4, index=[2]).x
    )
    free = sample(model, noise, solver=DDIM(eta=1.0), nfe=10, grid="uniform", seed=0)
    torch.testing.assert_close(dps(model, op, y, noise, nfe=10, zeta=0.0, seed=0).x, free.x)
    with pytest.raises(ValueError, match="zeta"):
        DPS(op, y, zeta=-1.0)


class CountingNet:
    """A network that counts its calls (the NFE a method reports must equal them)."""

    def __init__(self, model) -> None:
        self.model, self.calls = model, 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.model.net(x, t)


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("dps", {"nfe": 6}),
        ("dc", {"nfe": 6}),
        ("dc", {"nfe": 6, "where": "x0"}),
        ("repaint", {"steps": 6, "jump_length": 2, "resamples": 2}),
        ("red_diff", {"steps": 6}),
        ("dps", {"nfe": 7, "solver": "heun"}),
    ],
)
def test_reported_nfe_is_the_number_of_network_calls(method: str, options: dict) -> None:
    prior = _prior()
    model = prior.model(get_path("vp"))
    op = RandomProjection((8,), 4, noise_std=0.1, seed=3)
    y = op(prior.sample(2, torch.Generator().manual_seed(8)))
    if method == "repaint":
        op, y = Inpaint(random_mask((8,), 0.5, seed=1)), y.new_zeros(2, 8)
    net = CountingNet(model)
    out = solve(Model(net, model.path, "x0"), op, y, method, seed=0, **options)
    assert out.nfe == net.calls > 0


def test_dps_gradient_reuses_the_taped_forward_pass() -> None:
    prior = _prior()
    path = get_path("vp")
    model = prior.model(path)
    op = RandomProjection((8,), 4, seed=3)
    y = op(prior.sample(2, torch.Generator().manual_seed(8)))
    net = CountingNet(model)
    counted, counter = TapedModel(Model(net, path, "x0")), Evaluations()
    node = node_at(path, 0.6)
    run = fixed_run(path, 10, 0, lambda x, n: counted.at(x, n, counter), torch.randn_like)
    x_t = torch.randn(2, 8, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    hook = DPS(op, y)
    state = hook.start(run)
    out = hook.on_prediction(run.evaluate(x_t, node), node, run, state)
    # g = grad_{x_t} ||y - A x0_hat(x_t)|| by autograd, from the one counted forward pass.
    leaf = x_t.clone().requires_grad_(True)
    norm = (y - op(model(leaf, 0.6).x0)).square().sum(1).sqrt()
    (expected,) = torch.autograd.grad(norm.sum(), leaf)
    assert state.grad is not None and state.residual is not None
    torch.testing.assert_close(state.grad, expected)
    torch.testing.assert_close(state.residual, norm.detach())
    assert net.calls == counter.nfe == 1 and not out.value.requires_grad


def test_dps_after_a_hook_that_drops_the_graph_evaluates_again_and_counts_it() -> None:
    prior = _prior()
    path = get_path("vp")
    model = prior.model(path)
    op = RandomProjection((8,), 4, seed=3)
    y = op(prior.sample(2, torch.Generator().manual_seed(8)))
    net = CountingNet(model)
    drop = FunctionHook(on_prediction=lambda pred, node, run: detached(pred))
    noise = torch.randn(2, 8, dtype=torch.float64)
    hooks = [drop, DPS(op, y)]
    counted = Model(net, path, "x0")
    out = sample(counted, noise, solver="ddim", steps=5, grid="uniform", hooks=hooks, seed=0)
    assert out.nfe == net.calls == 10
    # The same sample as with the single taped forward pass.
    torch.testing.assert_close(out.x, dps(model, op, y, noise, steps=5, solver="ddim").x)


def test_solve_errors() -> None:
    prior = _prior()
    model = prior.model(get_path("vp"))
    op = RandomProjection((8,), 4)
    with pytest.raises(ValueError, match="unknown method"):
        solve(model, op, torch.zeros(1, 4), "magic")
    with pytest.raises(ValueError, match=r"y must have shape \(B, \*\(4,\)\)"):
        solve(model, op, torch.zeros(1, 5), "dps")
    with pytest.raises(ValueError, match="takes no sampler"):
        solve(model, op, torch.zeros(1, 4), "red_diff", sampler=DPS_SAMPLER)
    with pytest.raises(ValueError, match="weighting"):
        red_diff(model, op, torch.zeros(1, 4), weighting="cubic")


def test_red_diff_adam_is_torch_adam_on_the_official_loss() -> None:
    # The official loop: torch.optim.Adam(lr 0.1, betas (0.9, 0.99)) on w_t loss_noise + loss_obs.
    prior = _prior()
    model = prior.model(get_path("vp"))
    op = RandomProjection((8,), 4, seed=2)
    y = op(prior.sample(3, torch.Generator().manual_seed(9)))
    ours = red_diff(model, op, y, steps=20, seed=0).x
    noise = Streams(0, 3, "red-diff-noise")
    times = torch.linspace(0.999, 1e-3, 20, dtype=torch.float64)
    alphas, sigmas = (c.tolist() for c in model.path.coefficients(times)[:2])
    mu = op.pinv(y).clone().requires_grad_(True)
    opt = torch.optim.Adam([mu], lr=0.1, betas=(0.9, 0.99))
    for t, alpha, sigma in zip(times.tolist(), alphas, sigmas, strict=True):
        eps = noise.normal((8,), dtype=torch.float64)
        with torch.no_grad():
            eps_hat = model((alpha * mu + sigma * eps).detach(), t).eps
        noise_term = ((eps_hat - eps) * mu).sum(1) / 8
        obs_term = ((y - op(mu)) ** 2).sum(1) / (2 * 4)
        opt.zero_grad()
        (0.25 * sigma / alpha * noise_term + obs_term).sum().backward()
        opt.step()
    torch.testing.assert_close(ours, mu.detach())


@pytest.mark.parametrize("mode", ["pinv", "gradient"])
def test_soft_data_consistency_shrinks_the_residual_by_one_minus_weight(mode: str) -> None:
    # For a mask, A A^+ = A A^T = A on y's range: one soft step scales A x - y by (1 - w).
    op = Inpaint(random_mask((10,), 0.5, seed=1))
    x, y = torch.randn(3, 10, dtype=torch.float64), op(torch.randn(3, 10, dtype=torch.float64))
    out = DataConsistency(op, y, weight=0.3, mode=mode).project(x, y)
    torch.testing.assert_close(op(out) - y, 0.7 * (op(x) - y))
    torch.testing.assert_close(out - op(out), x - op(x))  # the unobserved part is untouched


def test_red_diff_is_batch_invariant() -> None:
    prior = _prior()
    model = prior.model(get_path("vp"))
    op = RandomProjection((8,), 4, noise_std=0.1, seed=3)
    y = op(prior.sample(3, torch.Generator().manual_seed(10)))
    both = red_diff(model, op, y, steps=15, seed=4)
    one = red_diff(model, op, y[2:], steps=15, seed=4, index=[2])
    torch.testing.assert_close(both.x[2:], one.x)
    random_order = red_diff(model, op, y, steps=15, seed=4, order="random")
    assert random_order.nfe == 15 and bool(torch.isfinite(random_order.x).all())
