"""MoLRG: exact denoiser vs Monte Carlo, PCA recovery, K-subspaces and the Jacobian rank."""

from __future__ import annotations

import pytest
import torch

from interpolant.analysis import (
    MoLRG,
    generalization_score,
    jacobian_rank,
    k_subspaces,
    pca_subspace,
    subspace_distance,
    train_subspace_denoiser,
)
from interpolant.errors import UserError
from interpolant.paths import EDM, VPLinear

torch.set_num_threads(1)


@pytest.mark.parametrize("path", [VPLinear(), EDM()], ids=["vp", "edm"])
def test_exact_denoiser_matches_monte_carlo_posterior_mean(path) -> None:
    dist = MoLRG.random(n=6, k=2, d=2, seed=0)
    g = torch.Generator().manual_seed(0)
    t = float(path.t_of_edm_sigma(torch.tensor(0.7, dtype=torch.float64)))
    tt = torch.tensor(t, dtype=torch.float64)
    a, s = float(path.alpha(tt)), float(path.sigma(tt))
    x0, _ = dist.sample(3, g)
    xt = a * x0 + s * torch.randn(3, 6, generator=g, dtype=torch.float64)
    prior, _ = dist.sample(400_000, g)
    logw = -((xt[:, None] - a * prior[None]) ** 2).sum(-1) / (2 * s * s)  # (3, M)
    mc = torch.einsum("bm,mn->bn", torch.softmax(logw, 1), prior)
    exact = dist.denoiser(xt, t, path)
    assert torch.allclose(exact, mc, atol=0.03), (exact - mc).abs().max()
    # Tweedie: the mixture's exact score is (alpha D(x) - x) / sigma^2.
    tweedie = (a * exact - xt) / s**2
    assert torch.allclose(dist.score(xt, t, path), tweedie, atol=1e-5)


def test_one_subspace_model_recovers_pca() -> None:
    g = torch.Generator().manual_seed(1)
    dist = MoLRG.random(n=8, k=1, d=3, seed=1)
    x, _ = dist.sample(200, g)
    data = x + 0.05 * torch.randn(x.shape, generator=g, dtype=torch.float64)
    model = train_subspace_denoiser(data, VPLinear(), k=1, d=3, steps=300, seed=0)
    pca = pca_subspace(data, 3)
    assert float(subspace_distance(model.bases.detach(), pca[None]).max()) < 0.05
    assert float(subspace_distance(pca[None], dist.bases).max()) < 0.2  # PCA near the truth


def test_k_subspaces_and_distance() -> None:
    dist = MoLRG.random(n=12, k=3, d=2, seed=2)
    x, _ = dist.sample(300, torch.Generator().manual_seed(3))
    est = k_subspaces(x, 3, 2, seed=0)
    assert float(subspace_distance(est, dist.bases).max()) < 1e-8
    # The distance is permutation invariant (Hungarian matching) and sqrt(2 d) for orthogonal.
    assert float(subspace_distance(dist.bases.flip(0), dist.bases).max()) < 1e-12
    other = MoLRG.random(n=12, k=3, d=2, seed=2).bases[:, :, :]
    assert torch.allclose(
        subspace_distance(other[[1]], dist.bases[[0]]), torch.tensor([2.0]).double()
    )


def test_jacobian_rank_of_exact_denoiser_is_the_subspace_dimension() -> None:
    path, dist = VPLinear(), MoLRG.random(n=10, k=2, d=3, seed=4)
    x0, _ = dist.sample(6, torch.Generator().manual_seed(5))
    t = float(path.t_of_edm_sigma(torch.tensor(0.05, dtype=torch.float64)))
    tt = torch.tensor(t, dtype=torch.float64)
    xt = float(path.alpha(tt)) * x0 + float(path.sigma(tt)) * 0.1 * torch.randn(6, 10).double()
    rank, _ = jacobian_rank(lambda y, s: dist.denoiser(y, s, path), xt, t, path)
    assert rank.tolist() == [3] * 6
    with pytest.raises(UserError):
        jacobian_rank(lambda y, s: y, xt, 0.0, path)


def test_molrg_refuses_non_orthogonal_bases() -> None:
    with pytest.raises(UserError, match="orthogonal"):
        MoLRG(torch.ones(2, 4, 1))


def test_generalization_score_of_copies_and_of_fresh_samples() -> None:
    dist = MoLRG.random(n=10, k=2, d=3, seed=6)
    g = torch.Generator().manual_seed(7)
    train, _ = dist.sample(50, g)
    copies = train + 1e-4 * torch.randn(train.shape, generator=g, dtype=torch.float64)
    assert generalization_score(copies, train) == 0.0
    fresh, _ = dist.sample(200, g)
    assert generalization_score(fresh, train) > 0.9
