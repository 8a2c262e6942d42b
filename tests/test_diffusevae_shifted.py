"""The shifted-mean path x_t = alpha (x0 - m) + sigma eps + m against exact Gaussian answers."""

from __future__ import annotations

import pytest
import torch

from interpolant import paths
from interpolant.data.oracles import GaussianMixture
from interpolant.diffusevae import ShiftedMean, ShiftedModel
from interpolant.errors import UserError, WrongTypeError
from interpolant.losses import Objective
from interpolant.predictions import KINDS, Model
from interpolant.solvers import Sampler, sample

torch.set_num_threads(1)

MU = torch.tensor([0.5, -1.0, 0.25], dtype=torch.float64)
SIGMA = torch.tensor(
    [[0.30, 0.10, 0.00], [0.10, 0.20, -0.05], [0.00, -0.05, 0.15]], dtype=torch.float64
)
# y0 = x0 - m ~ N(MU, SIGMA) whatever m: x0 | m ~ N(m + MU, SIGMA).
ORACLE = GaussianMixture(MU[None], SIGMA[None])


def conditional_model(path: paths.GaussianPath) -> Model:
    """The exact data-space denoiser E[x0 | x_t, m] of the shifted path: the Gaussian oracle on
    y = x - m, shifted back (the network sees x_t and m, as DiffuseVAE's does)."""

    def net(x: torch.Tensor, t: torch.Tensor, prior_mean: torch.Tensor) -> torch.Tensor:
        return ORACLE.denoiser(x - prior_mean, t.to(torch.float64), path) + prior_mean

    return Model(net, path, predicts="x0")


def two_means(n: int) -> torch.Tensor:
    m = torch.tensor([[2.0, 1.0, -3.0], [-1.5, 0.5, 4.0]], dtype=torch.float64)
    return m.repeat_interleave(n, 0)


@pytest.mark.parametrize(
    ("path", "solver"),
    [(paths.VPLinear(), "dpmpp_2m"), (paths.Linear(), "ddim"), (paths.VPCosine(), "heun")],
)
def test_sampling_reproduces_the_exact_conditional_law(path, solver) -> None:
    n = 3000
    m = two_means(n)
    noise = torch.randn(m.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    shift = ShiftedMean(path)
    spec = Sampler(solver, steps=40, grid="logsnr" if solver != "ddim" else "uniform")
    x = shift.sample(conditional_model(path), noise, spec, cond={"prior_mean": m}).x
    for g in range(2):
        rows = x[g * n : (g + 1) * n]
        target = m[g * n] + MU
        se = (SIGMA.diagonal() / n).sqrt()
        assert ((rows.mean(0) - target).abs() < 5 * se).all(), (rows.mean(0), target)
        cov = torch.cov(rows.T)
        # sd of a covariance entry ~ sqrt((S_ii S_jj + S_ij^2) / n) < 0.011 here.
        assert (cov - SIGMA).abs().max() < 0.05, cov


def test_plain_sampling_of_the_same_network_is_wrong() -> None:
    """The test above can fail: without the shift, the same network misses the mean."""
    path, n = paths.Linear(), 500
    m = two_means(n)
    noise = torch.randn(m.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    x = sample(
        conditional_model(path),
        noise,
        Sampler("ddim", steps=20, grid="uniform"),
        cond={"prior_mean": m},
    ).x
    assert (x[:n].mean(0) - (m[0] + MU)).abs().max() > 0.5


def test_zero_mean_is_the_plain_path_bitwise() -> None:
    path = paths.VPLinear()
    noise = torch.randn(64, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    spec = Sampler("dpmpp_2m", steps=12, grid="logsnr")
    plain = sample(ORACLE.model(path), noise, spec).x
    zero = torch.zeros_like(noise)
    shifted = (
        ShiftedMean(path).sample(conditional_model(path), noise, spec, cond={"prior_mean": zero}).x
    )
    assert torch.equal(plain, shifted)
    # The objective too: same draws, same loss.
    x0 = ORACLE.sample(32, torch.Generator().manual_seed(4))
    objective = Objective(path, target="eps")
    plain_loss = objective.loss(ORACLE.model(path), x0, torch.Generator().manual_seed(5))
    shifted_loss = (
        ShiftedMean(path)
        .objective(objective)
        .loss(
            conditional_model(path),
            x0,
            torch.Generator().manual_seed(5),
            cond={"prior_mean": torch.zeros_like(x0)},
        )
    )
    assert torch.equal(plain_loss, shifted_loss)


def test_forward_marginal_is_the_papers_equation() -> None:
    """x_t = alpha x0 + (1 - alpha) m + sigma eps (DiffuseVAE eq. 9), and at t = 1 of a path with
    alpha(1) = 0 the marginal is N(m, sigma_max^2)."""
    path, shift = paths.Linear(), ShiftedMean(paths.Linear())
    g = torch.Generator().manual_seed(6)
    x0, m, eps = (torch.randn(8, 3, dtype=torch.float64, generator=g) for _ in range(3))
    t = torch.rand(8, dtype=torch.float64, generator=g)
    a, s = path.alpha(t)[:, None], path.sigma(t)[:, None]
    expected = a * x0 + (1 - a) * m + s * eps
    assert torch.allclose(shift.sample_xt(x0, t, eps, m), expected, atol=1e-12)
    loc, scale = shift.marginal(x0, torch.ones(8, dtype=torch.float64), m)
    assert torch.allclose(loc, m) and torch.allclose(scale, torch.ones_like(x0))
    # Monte Carlo: many eps at one (x0, m, t).
    eps = torch.randn(20000, 3, dtype=torch.float64, generator=g)
    xt = shift.sample_xt(x0[:1].expand(20000, 3), 0.4, eps, m[:1].expand(20000, 3))
    loc, scale = shift.marginal(x0[:1], 0.4, m[:1])
    assert (xt.mean(0) - loc[0]).abs().max() < 5 * float(scale[0, 0]) / 20000**0.5
    assert (xt.std(0) - scale[0]).abs().max() < 0.02


@pytest.mark.parametrize("path", [paths.VPLinear(), paths.Linear(), paths.EDM()])
def test_conversions_round_trip_and_match_the_exact_model(path) -> None:
    shift = ShiftedMean(path)
    g = torch.Generator().manual_seed(7)
    m = torch.randn(16, 3, dtype=torch.float64, generator=g)
    t = torch.full((16,), 0.3, dtype=torch.float64)
    x = shift.sample_xt(
        ORACLE.sample(16, g) + m, t, torch.randn(16, 3, generator=g, dtype=torch.float64), m
    )
    model = shift.model(conditional_model(path))
    pred = model(x - m, t, prior_mean=m)  # the shifted model reads y = x - m
    x0_data = conditional_model(path)(x, t, prior_mean=m).x0
    assert torch.allclose(pred.x0 + m, x0_data, atol=1e-12)
    for kind in KINDS:
        value = shift.convert(x0_data, "x0", kind, x, 0.3, m)
        in_y = pred.get(kind) + m if kind == "x0" else pred.get(kind)  # x0 is data, not y0
        assert torch.allclose(value, in_y, atol=1e-9, rtol=1e-9), kind
        back = shift.convert(value, kind, "x0", x, 0.3, m)
        assert torch.allclose(back, x0_data, atol=1e-8), kind
    # eps is the plain path's eps of y: x = alpha (x0 - m) + sigma eps + m.
    eps = shift.convert(x0_data, "x0", "eps", x, 0.3, m)
    tt = torch.tensor(0.3, dtype=torch.float64)
    recon = path.alpha(tt) * (x0_data - m) + path.sigma(tt) * eps + m
    assert torch.allclose(recon, x, atol=1e-10)


def test_objective_feeds_the_network_the_shifted_state() -> None:
    path = paths.VPLinear()
    shift = ShiftedMean(path)
    seen = {}

    def net(x, t, prior_mean):
        seen["x"], seen["t"], seen["m"] = x, t, prior_mean
        return torch.zeros_like(x)

    g = torch.Generator().manual_seed(8)
    x0, m = torch.randn(10, 3, generator=g), torch.randn(10, 3, generator=g)
    t, eps = torch.rand(10, generator=g), torch.randn(10, 3, generator=g)
    objective = shift.objective(Objective(path, target="eps"))
    loss = objective.loss(Model(net, path, "eps"), x0, cond={"prior_mean": m}, t=t, eps=eps)
    assert torch.allclose(seen["x"], shift.sample_xt(x0, t, eps, m), atol=1e-6)
    assert torch.equal(seen["m"], m)
    assert torch.allclose(loss, eps.square().mean())  # zero prediction: the loss is E eps^2


def test_clear_errors() -> None:
    path = paths.Linear()
    shift = ShiftedMean(path)
    model = conditional_model(path)
    noise = torch.randn(4, 3, dtype=torch.float64)
    with pytest.raises(UserError, match="prior_mean"):
        shift.sample(model, noise, Sampler("ddim", steps=2), cond={})
    with pytest.raises(UserError, match="shape of x"):
        shift.sample(model, noise, Sampler("ddim", steps=2), cond={"prior_mean": noise[:2]})
    with pytest.raises(WrongTypeError):
        ShiftedMean("linear")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="path"):
        ShiftedModel(conditional_model(paths.VPLinear()), shift)
    with pytest.raises(UserError, match="path"):
        shift.objective(Objective(paths.VPLinear()))
    assert ShiftedMean.from_config(shift.config()) == shift
