"""Fokker-Planck residuals vanish for exact densities and scores on the library's paths."""

from __future__ import annotations

import pytest
import torch

from interpolant import Model
from interpolant.analysis import (
    ConservativeScore,
    FokkerPlanckRegularized,
    PotentialNet,
    fp_residual,
    log_density_residual,
    score_residual,
    w2_grid,
    w2_samples,
    w2_sliced,
)
from interpolant.data.oracles import GaussianMixture
from interpolant.errors import UserError, WrongTypeError
from interpolant.losses import Objective
from interpolant.paths import VE, Linear, Trig, VPCosine, VPLinear

torch.set_num_threads(1)
PATHS = [VPLinear(), VPCosine(), Linear(), Trig(), VE()]


def gaussian() -> GaussianMixture:
    cov = torch.tensor([[1.0, 0.3, 0.0], [0.3, 0.5, 0.1], [0.0, 0.1, 0.8]], dtype=torch.float64)
    return GaussianMixture(torch.tensor([[0.5, -1.0, 0.2]], dtype=torch.float64), cov[None])


def mixture() -> GaussianMixture:
    g = torch.Generator().manual_seed(0)
    means = 2 * torch.randn(3, 3, generator=g, dtype=torch.float64)
    factors = torch.randn(3, 3, 3, generator=g, dtype=torch.float64) * 0.4
    covs = factors @ factors.mT + 0.05 * torch.eye(3, dtype=torch.float64)
    return GaussianMixture(means, covs, torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64))


@pytest.mark.parametrize("path", PATHS, ids=lambda p: type(p).__name__)
@pytest.mark.parametrize("oracle", [gaussian, mixture])
def test_exact_log_density_and_score_have_zero_residual(path, oracle) -> None:
    gm = oracle()
    g = torch.Generator().manual_seed(1)
    t = torch.rand(16, generator=g, dtype=torch.float64) * 0.9 + 0.05
    x = path.sample_xt(gm.sample(16, g), t, torch.randn(16, 3, generator=g, dtype=torch.float64))
    r_log = log_density_residual(lambda y, s: gm.log_prob(y, s, path), x, t, path)
    r_score = score_residual(lambda y, s: gm.score(y, s, path), x, t, path)
    assert float(r_log.abs().max()) < 1e-5
    assert float(r_score.abs().max()) < 1e-5
    # A wrong score (scaled) is not a solution.
    wrong = score_residual(lambda y, s: 0.8 * gm.score(y, s, path), x, t, path)
    assert float(wrong.abs().max()) > 1e-2


def test_hutchinson_residual_is_unbiased() -> None:
    gm, path = mixture(), VPLinear()
    x = gm.sample(4, torch.Generator().manual_seed(2))
    lp = lambda y, s: gm.log_prob(y, s, path) + 0.1 * y[:, 0] ** 3  # noqa: E731  (not a solution)
    exact = log_density_residual(lp, x, 0.4, path)
    est = log_density_residual(lp, x, 0.4, path, exact=False, n_probes=4000)
    assert torch.allclose(est, exact, atol=0.05 * float(exact.abs().max()) + 1e-3)


def test_potential_model_residual_and_relu_refusal() -> None:
    torch.manual_seed(0)
    path = VPLinear()
    model = Model(ConservativeScore(PotentialNet(2, 16, 2)).double(), path, predicts="score")
    x = torch.randn(5, 2, dtype=torch.float64)
    r = fp_residual(model, x, 0.3, "log-density")
    assert r.shape == (5,) and bool(r.isfinite().all())
    assert fp_residual(model, x, 0.3, "score").shape == (5, 2)
    relu = Model(ConservativeScore(PotentialNet(2, 8, 1, "relu")), path, predicts="score")
    with pytest.raises(UserError, match="ReLU"):
        fp_residual(relu, x.float(), 0.3, "log-density")
    free = Model(lambda y, t: -y, path, predicts="score")
    with pytest.raises(WrongTypeError, match="potential model"):
        fp_residual(free, x, 0.3, "log-density")
    with pytest.raises(UserError, match="0 < t < 1"):
        fp_residual(model, x, 0.0, "score")


def test_regulariser_adds_the_weighted_residual_and_trains() -> None:
    torch.manual_seed(0)
    path = VPLinear()
    model = Model(ConservativeScore(PotentialNet(2, 16, 2)), path, predicts="score")
    base = Objective(path, target="eps")
    x0 = torch.randn(32, 2)
    reg = FokkerPlanckRegularized(base, weight=2.0, points=8)
    total = reg.loss(model, x0, torch.Generator().manual_seed(5))
    plain = base.loss(model, x0, torch.Generator().manual_seed(5))
    extra = reg.residual_loss(model, x0, _after_base(base, model, x0))
    assert torch.allclose(total, plain + 2.0 * extra, rtol=1e-5)
    total.backward()
    # Every weight gets a finite gradient (the energy's output bias leaves the score unchanged).
    grads = {n: p.grad for n, p in model.named_parameters() if not n.endswith("4.bias")}
    assert all(g_ is not None and bool(g_.isfinite().all()) for g_ in grads.values())
    assert float(grads["net.energy.mlp.0.weight"].abs().sum()) > 0


def _after_base(base, model, x0) -> torch.Generator:
    """A generator in the state the regulariser sees (after the base objective's draws)."""
    g = torch.Generator().manual_seed(5)
    base.loss(model, x0, g)
    return g


def test_w2_on_grid_and_samples() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 2, generator=g, dtype=torch.float64)
    shift = torch.tensor([1.0, 0.0], dtype=torch.float64)
    # A translation by 1: W2 = 1 exactly for the empirical measures.
    assert abs(w2_samples(x, x + shift) - 1.0) < 1e-9
    assert abs(w2_grid(x, x + shift, bins=41, low=-5.0, high=5.0) - 1.0) < 0.03
    assert w2_grid(x, x) < 1e-6  # LP round-off only
    assert abs(w2_sliced(x, x + shift, n_projections=2000) - (0.5**0.5)) < 0.05
