"""Intrinsic dimension 2 for a plane and a sphere embedded in 5 dimensions (exact scores)."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant.analysis import jacobian_flow_dim, normal_bundle_dim
from interpolant.data.oracles import GaussianMixture
from interpolant.errors import UserError
from interpolant.paths import VPLinear

torch.set_num_threads(1)
PATH = VPLinear()


def rotation(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))[0]


def plane() -> GaussianMixture:
    q = rotation(0)
    cov = q @ torch.diag(torch.tensor([1.0, 1.0, 1e-6, 1e-6, 1e-6], dtype=torch.float64)) @ q.T
    return GaussianMixture(torch.zeros(1, 5, dtype=torch.float64), cov[None])


def sphere(n: int = 1500) -> tuple[GaussianMixture, torch.Tensor]:
    """The unit sphere S^2 of a random 3-D subspace, as the exact mixture of N narrow Gaussians
    at points spread on it (a Fibonacci lattice)."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * i / n
    phi = math.pi * (1 + 5**0.5) * i
    r = torch.sqrt(1 - z**2)
    pts3 = torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], 1)
    pts = torch.cat([pts3, torch.zeros(n, 2, dtype=torch.float64)], 1) @ rotation(1).T
    covs = (0.04**2) * torch.eye(5, dtype=torch.float64).expand(n, 5, 5).clone()
    return GaussianMixture(pts, covs), pts


def test_normal_bundle_plane_and_sphere() -> None:
    gm = plane()
    anchors = gm.sample(10, torch.Generator().manual_seed(2))
    est = normal_bundle_dim(lambda x, t: gm.score(x, t, PATH), anchors, 0.01, PATH)
    assert est.dims.tolist() == [2] * 10
    sph, pts = sphere()
    t = float(PATH.t_of_edm_sigma(torch.tensor(0.08, dtype=torch.float64)))
    est = normal_bundle_dim(lambda x, s: sph.score(x, s, PATH), pts[::150], t, PATH)
    assert est.dims.tolist() == [2] * 10


def test_jacobian_flow_plane() -> None:
    gm = plane()
    start = torch.randn(4, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    est = jacobian_flow_dim(lambda x, t: gm.velocity(x, t, PATH), start, 1.0, 0.01, steps=50)
    assert est.dims.tolist() == [2] * 4


def test_noise_level_outside_the_path_is_refused() -> None:
    gm = plane()
    with pytest.raises(UserError, match="outside the path's noise range"):
        normal_bundle_dim(lambda x, t: gm.score(x, t, PATH), torch.zeros(2, 5), 1.5, PATH)
    with pytest.raises(UserError, match="outside"):
        jacobian_flow_dim(lambda x, t: x, torch.zeros(2, 5), 1.0, 0.0)
