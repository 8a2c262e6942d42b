"""Sample distances against closed forms: sliced W2 of Gaussians, MMD of Gaussians, energy
distance of shifted normals, precision/recall of identical and disjoint sets."""

import math

import pytest
import torch

from interpolant.metrics import (
    energy_distance,
    median_bandwidth,
    mmd,
    precision_recall,
    sliced_wasserstein,
    wasserstein_1d,
)


def _normal(n, d, seed, mean=0.0, std=1.0):
    g = torch.Generator().manual_seed(seed)
    return mean + std * torch.randn(n, d, generator=g, dtype=torch.float64)


def test_wasserstein_1d_matches_scipy_for_unequal_sizes():
    stats = pytest.importorskip("scipy.stats")
    u, v = _normal(137, 1, 0)[:, 0], _normal(200, 1, 1, 0.3, 2.0)[:, 0]
    w1 = wasserstein_1d(u[:, None], v[:, None], p=1)[0]
    assert float(w1) == pytest.approx(stats.wasserstein_distance(u.numpy(), v.numpy()), rel=1e-12)
    # Equal sizes, p = 2: the sorted pairing.
    a, b = u[:100], v[:100]
    w2sq = wasserstein_1d(a[:, None], b[:, None], p=2)[0]
    assert float(w2sq) == pytest.approx(
        float(((a.sort().values - b.sort().values) ** 2).mean()), rel=1e-12
    )


def test_sliced_w2_of_1d_gaussians_is_the_closed_form():
    # W2(N(m1, s1^2), N(m2, s2^2)) = sqrt((m1 - m2)^2 + (s1 - s2)^2); in 1-D SW2 = W2.
    x, y = _normal(20_000, 1, 0, 0.0, 1.0), _normal(20_000, 1, 1, 1.5, 2.0)
    # Seed-to-seed std of this estimate is ~0.017 (measured over 10 seeds).
    sw = sliced_wasserstein(x, y, p=2, n_projections=4)  # every direction is +-1 in 1-D
    assert float(sw) == pytest.approx(math.hypot(1.5, 1.0), abs=0.05)
    same = sliced_wasserstein(x, _normal(20_000, 1, 2), n_projections=4)
    assert float(same) < 0.08  # W2 between two samples of one law decays slowly with n


def test_sliced_w2_of_isotropic_gaussians_in_3d():
    # E_theta (theta . dm)^2 = |dm|^2 / d for theta uniform on the sphere.
    dm = torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64)
    x, y = _normal(4000, 3, 0), _normal(4000, 3, 1, dm, 0.5)
    expected = math.sqrt(float(dm @ dm) / 3 + 0.25)
    # Monte Carlo over 1000 directions adds ~1.2% relative error, sampling ~1%.
    assert float(sliced_wasserstein(x, y, n_projections=1000)) == pytest.approx(expected, rel=0.04)


def test_sliced_wasserstein_uses_its_own_generator():
    x, y = _normal(300, 4, 0), _normal(200, 4, 1, 0.5)
    torch.manual_seed(123)
    a = sliced_wasserstein(x, y, seed=5)
    torch.manual_seed(999)
    b = sliced_wasserstein(x, y, seed=5)
    c = sliced_wasserstein(x[torch.randperm(300)], y, seed=5)  # sample order is irrelevant
    d = sliced_wasserstein(x, y, generator=torch.Generator().manual_seed(5))
    assert float(a) == float(b) == pytest.approx(float(c), rel=1e-12) == float(d)
    assert float(sliced_wasserstein(x, y, seed=6)) != float(a)
    with pytest.raises(ValueError, match="p must be 1 or 2"):
        sliced_wasserstein(x, y, p=3)
    with pytest.raises(ValueError, match="same sample size"):
        sliced_wasserstein(x, y[:, :3])


def _mmd_closed_form(delta_sq, s, h, d):
    # X - Y ~ N(dm, 2 s^2 I): E exp(-|Z|^2 / 2h^2) = c exp(-|dm|^2 / (2 (h^2 + 2 s^2))),
    # c = (h^2 / (h^2 + 2 s^2))^(d/2).
    c = (h**2 / (h**2 + 2 * s**2)) ** (d / 2)
    return 2 * c * (1 - math.exp(-delta_sq / (2 * (h**2 + 2 * s**2))))


def test_mmd_is_unbiased_for_identical_distributions():
    values = torch.stack(
        [mmd(_normal(200, 2, 2 * i), _normal(200, 2, 2 * i + 1), bandwidth=1.0) for i in range(30)]
    )
    se = float(values.std()) / math.sqrt(len(values))
    assert abs(float(values.mean())) < 3 * se
    assert (values < 0).any()  # the U-statistic is not clipped at zero
    biased = torch.stack(
        [
            mmd(_normal(200, 2, 2 * i), _normal(200, 2, 2 * i + 1), bandwidth=1.0, unbiased=False)
            for i in range(30)
        ]
    )
    assert float(biased.mean()) > 5 * se  # the V-statistic is biased upwards
    x = _normal(100, 2, 0)
    assert float(mmd(x, x, bandwidth=0.7, unbiased=False)) == pytest.approx(0.0, abs=1e-12)


def test_mmd_of_shifted_gaussians_matches_the_closed_form():
    dm = torch.tensor([1.0, 0.0], dtype=torch.float64)
    values = [
        float(mmd(_normal(400, 2, 2 * i), _normal(400, 2, 2 * i + 1, dm), bandwidth=1.5))
        for i in range(10)
    ]
    expected = _mmd_closed_form(1.0, 1.0, 1.5, 2)
    assert sum(values) / len(values) == pytest.approx(expected, rel=0.05)


def test_mmd_bandwidths_and_gradient():
    x, y = _normal(300, 3, 0), _normal(300, 3, 1, 0.2)
    h = median_bandwidth(x, y)
    pooled = torch.cat([x, y])
    d = torch.cdist(pooled, pooled)
    i, j = torch.triu_indices(600, 600, offset=1)
    assert h == pytest.approx(float(d[i, j].median()), rel=1e-12)
    assert float(mmd(x, y)) == pytest.approx(float(mmd(x, y, bandwidth=h)), rel=1e-12)
    two = float(mmd(x, y, bandwidth=[0.5, 2.0]))
    assert two == pytest.approx(
        float(mmd(x, y, bandwidth=0.5)) + float(mmd(x, y, bandwidth=2.0)), rel=1e-10
    )
    y_leaf = y.clone().requires_grad_(True)
    mmd(x, y_leaf, bandwidth=1.0).backward()
    assert torch.isfinite(y_leaf.grad).all() and y_leaf.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="bandwidth"):
        mmd(x, y, bandwidth="silverman")
    with pytest.raises(ValueError, match="N >= 2"):
        mmd(x[:1], y)


def _energy_closed_form(d):
    # 2 E|X - Y| - E|X - X'| - E|Y - Y'| for N(0, 1), N(d, 1): X - Y ~ N(d, 2).
    sigma = math.sqrt(2)
    folded = sigma * math.sqrt(2 / math.pi) * math.exp(-(d**2) / (2 * sigma**2)) + d * math.erf(
        d / (sigma * math.sqrt(2))
    )
    return 2 * folded - 2 * sigma * math.sqrt(2 / math.pi)


@pytest.mark.parametrize("shift", [0.0, 0.5, 2.0])
def test_energy_distance_of_shifted_normals(shift):
    values = torch.tensor(
        [
            float(energy_distance(_normal(1000, 1, 2 * i), _normal(1000, 1, 2 * i + 1, shift)))
            for i in range(12)
        ]
    )
    se = float(values.std()) / math.sqrt(len(values))
    assert abs(float(values.mean()) - _energy_closed_form(shift)) < 4 * se + 1e-3


def test_energy_distance_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    u, v = _normal(150, 1, 0), _normal(90, 1, 1, 0.4, 1.5)
    ours = float(energy_distance(u, v, unbiased=False))
    assert math.sqrt(ours) == pytest.approx(
        stats.energy_distance(u[:, 0].numpy(), v[:, 0].numpy()), rel=1e-10
    )


def test_precision_recall_identical_iid_disjoint_and_half():
    x = _normal(1000, 2, 0)
    same = precision_recall(x, x)
    assert same.precision == 1.0 and same.recall == 1.0
    iid = precision_recall(x, _normal(1000, 2, 1))
    assert iid.precision > 0.9 and iid.recall > 0.9
    far = precision_recall(x, _normal(1000, 2, 2, 50.0))
    assert far.precision == 0.0 and far.recall == 0.0
    # Real: two separated blobs. Fake: one of them. Precision ~1, recall ~1/2.
    centres = torch.tensor([[-10.0, 0.0], [10.0, 0.0]], dtype=torch.float64)
    real = _normal(2000, 2, 3) + centres[torch.arange(2000) % 2]
    fake = _normal(1000, 2, 4) + centres[0]
    pr = precision_recall(real, fake)
    assert pr.precision > 0.9 and abs(pr.recall - 0.5) < 0.05
    with pytest.raises(ValueError, match="k must be"):
        precision_recall(x[:3], x[:3], k=3)


def test_blocked_computation_equals_one_block(monkeypatch):
    import interpolant.metrics.distances as distances

    x, y = _normal(300, 3, 0), _normal(200, 3, 1, 0.3)
    whole = [float(mmd(x, y, bandwidth=1.0)), float(energy_distance(x, y)), precision_recall(x, y)]
    monkeypatch.setattr(distances, "_rows_per_chunk", lambda cols, budget=0: 7)
    blocked = [
        float(mmd(x, y, bandwidth=1.0)),
        float(energy_distance(x, y)),
        precision_recall(x, y),
    ]
    assert blocked[0] == pytest.approx(whole[0], abs=1e-12)
    assert blocked[1] == pytest.approx(whole[1], abs=1e-9)
    assert blocked[2] == whole[2]
    x_leaf = x.clone().requires_grad_(True)
    energy_distance(x_leaf, y).backward()  # zero distances on the diagonal: gradients stay finite
    assert torch.isfinite(x_leaf.grad).all()
