"""The objective: weights, the time-density/weighting equivalence, and the exact minimiser."""

import json

import pytest
import torch
from torch import nn

from interpolant import Model, Preconditioned
from interpolant.data import GaussianMixture, ring2d
from interpolant.losses import (
    WEIGHTINGS,
    CosMap,
    DensityWeight,
    EDMLogNormal,
    EDMWeight,
    LogitNormal,
    MinSNR,
    Mode,
    Objective,
    Shift,
    SNRWeight,
    Uniform,
    UniformWeight,
    get_weighting,
    kind_factor,
    weight_from_config,
)
from interpolant.paths import EDM, PFGM, VP, Linear, Trig
from interpolant.predictions import KINDS, convert

F64 = torch.float64
ORACLE = ring2d()


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def perturbed_x0_net(path, delta: float):
    """The exact denoiser plus delta * f(x_t, t), a smooth perturbation."""

    def net(x, t):
        return ORACLE.denoiser(x, t, path) + delta * torch.sin(x + t[:, None]).flip(1)

    return net


# -- weights ------------------------------------------------------------------------------------


def explicit_x0_factor(path, t, kind):
    """K_kind(t) written out by hand (the table in losses.weights)."""
    a, s, da, ds = path.coefficients(t)
    return {
        "x0": torch.ones_like(t),
        "eps": a**2 / s**2,
        "v": (a**2 + s**2) ** 2 / s**2,
        "velocity": (da - ds * a / s) ** 2,
        "score": a**2 / s**4,
    }[kind]


@pytest.mark.parametrize("path", [Linear(), VP(), EDM(), Trig()], ids=lambda p: p.name)
@pytest.mark.parametrize("kind", KINDS)
def test_kind_factor_matches_table(path, kind):
    t = torch.linspace(0.02, 0.98, 49, dtype=F64)
    torch.testing.assert_close(kind_factor(path, t, kind), explicit_x0_factor(path, t, kind))


def test_min_snr_matches_hang_et_al_per_target_on_vp():
    path, gamma = VP(), 5.0
    t = torch.linspace(0.01, 0.99, 99, dtype=F64)
    snr = torch.exp(path.logsnr(t))
    w = {kind: MinSNR(gamma)(path, t, kind) for kind in KINDS}
    torch.testing.assert_close(w["x0"], snr.clamp(max=gamma))
    torch.testing.assert_close(w["eps"], snr.clamp(max=gamma) / snr)
    torch.testing.assert_close(w["v"], snr.clamp(max=gamma) / (snr + 1))
    # Every target: w_k K_k is the same x0-space weight min(SNR, gamma).
    for kind in KINDS:
        x0_space = w[kind] * explicit_x0_factor(path, t, kind)
        torch.testing.assert_close(x0_space, snr.clamp(max=gamma))


@pytest.mark.parametrize("weight", [MinSNR(5.0), SNRWeight(), EDMWeight(0.5)], ids=repr)
@pytest.mark.parametrize("path", [Linear(), VP(), EDM()], ids=lambda p: p.name)
def test_x0_space_weightings_give_the_same_loss_for_every_target(weight, path):
    # The same (imperfect) model and draws: the weighted loss does not depend on the target kind.
    x0 = ORACLE.sample(256, gen(0))
    model = Model(perturbed_x0_net(path, 0.3), path, "x0")
    losses = [
        Objective(path, kind, time=Uniform(0.02, 0.98), weight=weight).per_sample_loss(
            model, x0, gen(1)
        )
        for kind in KINDS
    ]
    for other in losses[1:]:
        torch.testing.assert_close(other, losses[0], rtol=1e-9, atol=1e-12)


def test_uniform_weight_is_plain_mse_on_the_target():
    path = Linear()
    x0 = ORACLE.sample(128, gen(2))
    t = torch.rand(128, generator=gen(3), dtype=F64)
    eps = torch.randn(128, 2, generator=gen(4), dtype=F64)
    net = perturbed_x0_net(path, 0.2)
    loss = Objective(path, "velocity").per_sample_loss(Model(net, path, "x0"), x0, t=t, eps=eps)
    # On the linear path: x_t = (1 - t) x0 + t eps, u = eps - x0 and u_hat = (x_t - x0_hat) / t.
    x_t = (1 - t[:, None]) * x0 + t[:, None] * eps
    u_hat = (x_t - net(x_t, t)) / t[:, None]
    torch.testing.assert_close(loss, (u_hat - (eps - x0)).square().mean(1))


def test_end_points_give_finite_weights():
    t = torch.tensor([0.0, 1.0], dtype=F64)
    for path in (Linear(), Trig()):  # alpha = 0 at t = 1, sigma = 0 at t = 0
        for kind in KINDS:
            for weight in (MinSNR(5.0), SNRWeight(), EDMWeight()):
                assert bool(torch.isfinite(weight(path, t, kind)).all()), (path, kind, weight)
    # Limits: min-SNR eps weight -> 1 where SNR -> 0, x0 weight -> gamma where SNR -> inf.
    assert float(MinSNR(5.0)(Linear(), t, "eps")[1]) == pytest.approx(1.0)
    assert float(MinSNR(5.0)(Linear(), t, "x0")[0]) == pytest.approx(5.0)


def test_weighting_names():
    assert (
        isinstance(get_weighting("min-snr-3.5"), MinSNR)
        and get_weighting("min-snr-3.5").gamma == 3.5
    )
    assert get_weighting("min-snr").gamma == 5.0
    assert isinstance(get_weighting("edm"), EDMWeight)
    with pytest.raises(ValueError, match="weight must be"):
        get_weighting("snr-min")
    with pytest.raises(ValueError, match="gamma"):
        get_weighting("min-snr--1")


@pytest.mark.parametrize(
    "weight",
    [UniformWeight(), SNRWeight(), MinSNR(3.0), EDMWeight(0.7), DensityWeight(LogitNormal(0.5))],
    ids=repr,
)
def test_weighting_config_round_trip(weight):
    config = json.loads(json.dumps(weight.config()))
    rebuilt = weight_from_config(config)
    assert rebuilt == weight and rebuilt.config() == weight.config()
    assert get_weighting(config) == weight
    t = torch.linspace(0.05, 0.95, 7, dtype=F64)
    torch.testing.assert_close(rebuilt(VP(), t, "eps"), weight(VP(), t, "eps"), rtol=0, atol=0)


def test_weighting_registry_and_errors():
    assert WEIGHTINGS["min-snr"] is MinSNR and "density" in WEIGHTINGS
    with pytest.raises(ValueError, match="unknown weighting"):
        weight_from_config({"name": "nope"})
    with pytest.raises(ValueError, match="cannot be serialised"):
        get_weighting(lambda path, t, target: torch.ones_like(t)).config()
    with pytest.raises(ValueError, match="EDMWeight: sigma_data must be a finite number > 0"):
        EDMWeight(0.0)


# -- time density vs weighting (Esser et al. 2024, sec. 3.1) -------------------------------------


@pytest.mark.parametrize(
    ("path", "target", "density"),
    [
        (Linear(), "velocity", LogitNormal(0.0, 1.0)),
        (Linear(), "eps", Mode(1.29)),
        (VP(), "x0", Shift(CosMap(), 2.0)),
    ],
    ids=["lognorm", "mode", "shifted-cosmap"],
)
def test_sampling_pi_equals_uniform_weighted_by_pi(path, target, density):
    n = 20_000
    x0 = ORACLE.sample(n, gen(5))
    model = Model(perturbed_x0_net(path, 0.3), path, "x0")
    sampled = Objective(path, target, time=density).per_sample_loss(model, x0, gen(6))
    weighted = Objective(path, target, time=Uniform(), weight=DensityWeight(density))
    reweighted = weighted.per_sample_loss(model, x0, gen(7))
    se = (sampled.var() / n + reweighted.var() / n).sqrt()
    assert abs(float(sampled.mean() - reweighted.mean())) < 4 * float(se)
    # Not a vacuous comparison: the plain uniform loss differs from both.
    plain = Objective(path, target, time=Uniform()).per_sample_loss(model, x0, gen(7))
    assert abs(float(plain.mean() - sampled.mean())) > 4 * float(se)


# -- the minimiser is the conditional expectation -----------------------------------------------


@pytest.mark.parametrize("path", [Linear(), VP()], ids=lambda p: p.name)
@pytest.mark.parametrize("target", KINDS)
def test_exact_model_minimises_the_loss(path, target):
    n = 8000
    x0 = ORACLE.sample(n, gen(8))
    objective = Objective(path, target, time=Uniform(0.05, 0.95))
    exact = objective.per_sample_loss(ORACLE.model(path), x0, gen(9))
    for delta in (0.3, -0.3):
        perturbed = objective.per_sample_loss(
            Model(perturbed_x0_net(path, delta), path, "x0"), x0, gen(9)
        )
        gap = perturbed - exact  # common random numbers: same t, eps
        assert float(gap.mean()) > 5 * float(gap.std() / n**0.5), (target, delta)


@pytest.mark.parametrize("target", KINDS)
def test_gradient_wrt_prediction_vanishes_in_expectation(target):
    # With pred = E[target | x_t], E[d loss / d pred * phi(x_t, t)] = 0 for any test function phi.
    path, n = Linear(), 20_000
    x0 = ORACLE.sample(n, gen(10))
    objective = Objective(path, target, time=Uniform(0.05, 0.95))

    def grads(delta_x0: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        offset = torch.zeros(n, 2, dtype=F64, requires_grad=True)
        seen = {}

        def net(x, t):
            seen["x"], seen["t"] = x, t
            x0_hat = perturbed_x0_net(path, delta_x0)(x, t)
            return convert(x0_hat, "x0", target, x, t, path) + offset

        loss = objective.per_sample_loss(Model(net, path, target), x0, gen(11)).sum()
        (g,) = torch.autograd.grad(loss, offset)
        return g, seen["x"], seen["t"]

    g, x_t, t = grads(0.0)
    for phi in (torch.ones_like(x_t), x_t, torch.sin(x_t + t[:, None]).flip(1)):
        stat = g * phi
        assert bool((stat.mean(0).abs() < 4 * stat.std(0) / n**0.5).all()), target
    # The same statistic detects a perturbed model (phi = the perturbation direction).
    g, x_t, t = grads(0.05)
    stat = g * torch.sin(x_t + t[:, None]).flip(1)
    assert bool((stat.mean(0).abs() > 4 * stat.std(0) / n**0.5).any()), target


# -- the objective as a training loss -----------------------------------------------------------


def test_preconditioned_x0_net_trains_on_a_velocity_target():
    # An x0-preconditioned network, trained through the velocity target: its excess loss over the
    # exact model (the minimiser) shrinks.
    torch.manual_seed(0)
    path = Linear()
    backbone = nn.Sequential(
        nn.Linear(3, 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU(), nn.Linear(64, 2)
    )

    class Net(nn.Module):
        def forward(self, x, c_noise):
            return backbone(torch.cat([x, c_noise[:, None]], dim=1))

    model = Model(Preconditioned(Net(), path, sigma_data=1.0), path, "x0")
    objective = Objective(path, "velocity", time=LogitNormal(0.0, 1.0))
    gaussian = GaussianMixture(
        torch.tensor([[1.0, -1.0]]), torch.diag(torch.tensor([0.5, 2.0]))[None]
    )
    x0_eval = gaussian.sample(4096, gen(12))

    def excess() -> float:
        with torch.no_grad():
            trained = objective.loss(model, x0_eval.float(), gen(13))
            exact = objective.loss(gaussian.model(path), x0_eval, gen(13))
        return float(trained) - float(exact)

    before = excess()
    optimiser = torch.optim.Adam(backbone.parameters(), lr=1e-2)
    for step in range(50):
        loss = objective.loss(
            model, gaussian.sample(256, gen(100 + step)).float(), gen(1000 + step)
        )
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    after = excess()
    assert 0 < after < 0.2 * before, (before, after)


def test_plain_callable_uses_predicts_and_draw_order():
    path = PFGM(D=4.0)  # heavy-tailed eps: the objective must draw it with path.noise_like
    x0 = ORACLE.sample(64, gen(13))
    objective = Objective(path, "x0", time=EDMLogNormal(), weight="edm", predicts="eps")

    def net(x, t):  # an eps net: the exact x0 of the EDM path, expressed as eps
        return convert(ORACLE.denoiser(x, t, path), "x0", "eps", x, t, path)

    loss = objective.per_sample_loss(net, x0, gen(14))
    g = gen(14)
    t = objective.sample_time(64, g)
    eps = path.noise_like(x0, g)
    again = objective.per_sample_loss(net, x0, t=t, eps=eps)
    torch.testing.assert_close(loss, again)
    # Batch invariance: per-sample losses do not depend on the other samples.
    single = torch.cat(
        [
            objective.per_sample_loss(net, x0[i : i + 1], t=t[i : i + 1], eps=eps[i : i + 1])
            for i in range(4)
        ]
    )
    torch.testing.assert_close(single, loss[:4])


def test_config_round_trip():
    objective = Objective(
        EDM(), "x0", time=Shift(EDMLogNormal(-1.0, 1.4), 1.5), weight=MinSNR(3.0), predicts="eps"
    )
    config = json.loads(json.dumps(objective.config()))
    rebuilt = Objective.from_config(config)
    assert rebuilt.config() == objective.config()
    x0 = ORACLE.sample(32, gen(15))
    model = ORACLE.model(EDM())
    torch.testing.assert_close(
        rebuilt.per_sample_loss(model, x0, gen(16)), objective.per_sample_loss(model, x0, gen(16))
    )


def test_bad_arguments():
    with pytest.raises(ValueError, match="target must be one of"):
        Objective(Linear(), "noise")
    with pytest.raises(ValueError, match="model's path"):
        Objective(Linear()).loss(ORACLE.model(VP()), ORACLE.sample(4, gen(0)))
    with pytest.raises(ValueError, match="net returned"):
        Objective(Linear()).loss(lambda x, t: x[:, :1], ORACLE.sample(4, gen(0)))
    with pytest.raises(ValueError, match="maps sigma on"):
        Objective(VP(), time=EDMLogNormal(path=EDM()))
    with pytest.raises(ValueError, match="t must have shape"):
        Objective(Linear()).loss(ORACLE.model(Linear()), ORACLE.sample(4, gen(0)), t=torch.rand(3))
