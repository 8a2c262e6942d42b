"""Gauge freedom (seed paper 10): a divergence-free c J x added to an exact isotropic score keeps
the ODE's marginals and likelihood; a conservative wrong field 0.8 s changes both."""

from __future__ import annotations

import torch

from interpolant import Model
from interpolant.data.oracles import GaussianMixture
from interpolant.metrics import mmd
from interpolant.paths import VPLinear
from interpolant.solvers import Sampler, log_likelihood, sample

torch.set_num_threads(1)
PATH = VPLinear()
ROT = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
T_MAX = 0.98


def scale_mixture() -> GaussianMixture:
    """1/2 N(0, 0.3^2 I) + 1/2 N(0, 1.5^2 I): isotropic, so grad p . J x = 0."""
    eye = torch.eye(2, dtype=torch.float64)
    return GaussianMixture(
        torch.zeros(2, 2, dtype=torch.float64), torch.stack([0.09 * eye, 2.25 * eye])
    )


def field_model(gm: GaussianMixture, c: float, scale: float = 1.0) -> Model:
    def net(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return scale * gm.score(x, t, PATH) + c * x @ ROT.T

    return Model(net, PATH, predicts="score")


def test_gauge_term_keeps_marginals_and_likelihood() -> None:
    gm = scale_mixture()
    n = 1500
    g = torch.Generator().manual_seed(0)
    # Start from the exact marginal at T_MAX (so any difference is the field's).
    start = gm.sample(n, g)
    start = PATH.sample_xt(start, torch.tensor(T_MAX), torch.randn(n, 2, generator=g).double())
    spec = Sampler("heun", steps=60, t_max=T_MAX)

    def draw(model: Model) -> torch.Tensor:
        return sample(model, start, spec, scale_noise=False).x

    data, other = gm.sample(n, g), gm.sample(n, g)
    floor = abs(float(mmd(data, other, bandwidth=0.5)))
    results = {c: float(mmd(draw(field_model(gm, c)), data, bandwidth=0.5)) for c in (0.0, 1.0)}
    wrong = float(mmd(draw(field_model(gm, 0.0, 0.8)), data, bandwidth=0.5))
    assert all(abs(v) < 3 * floor + 2e-3 for v in results.values()), (results, floor)
    assert wrong > 10 * max(abs(v) for v in results.values()), (wrong, results)

    x = gm.sample(6, torch.Generator().manual_seed(1))
    truth = gm.log_prob(x)

    def prior(y: torch.Tensor) -> torch.Tensor:
        return gm.log_prob(y, T_MAX, PATH)

    def ll(model: Model) -> torch.Tensor:
        return log_likelihood(model, x, t_max=T_MAX, prior=prior).log_prob

    for c in (0.0, 1.0):
        assert torch.allclose(ll(field_model(gm, c)), truth, atol=2e-3)
    assert float((ll(field_model(gm, 0.0, 0.8)) - truth).abs().max()) > 0.05
