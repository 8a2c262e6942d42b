"""Frechet distance between Gaussians fitted to features (FID's formula, Heusel et al. 2017).

    FD = |mu_1 - mu_2|^2 + tr(C_1 + C_2 - 2 (C_1^{1/2} C_2 C_1^{1/2})^{1/2})

The trace term is computed from eigenvalues: with S = C_1^{1/2} (symmetric, from ``eigh``),
``S C_2 S`` is symmetric PSD and has the eigenvalues of ``C_1 C_2``, so
``tr (C_1 C_2)^{1/2} = sum sqrt(eig(S C_2 S))``; no non-symmetric ``sqrtm``, no complex parts.
Features default to the project's own digit classifier ("digits"), never an Inception network.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..errors import UserError

FeatureSpec = str | Callable[[Tensor], Tensor] | None


def gaussian_stats(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (D,) and covariance (D, D) of (N, D) features, float64, covariance over N - 1."""
    f = features.reshape(features.shape[0], -1).to(torch.float64)
    if f.shape[0] < 2:
        raise UserError(f"need at least 2 samples for a covariance, got {f.shape[0]}")
    mu = f.mean(0)
    centred = f - mu
    return mu, centred.T @ centred / (f.shape[0] - 1)


def _sqrt_psd(c: Tensor) -> Tensor:
    """Symmetric square root of a PSD matrix (eigenvalues clamped at 0)."""
    lam, q = torch.linalg.eigh(0.5 * (c + c.T))
    return (q * lam.clamp(min=0).sqrt()) @ q.T


def frechet_distance_from_stats(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor) -> float:
    """FD between N(mu1, cov1) and N(mu2, cov2) (the squared 2-Wasserstein distance)."""
    mu1, mu2 = mu1.to(torch.float64).reshape(-1), mu2.to(torch.float64).reshape(-1)
    cov1, cov2 = cov1.to(torch.float64), cov2.to(torch.float64)
    d = mu1.shape[0]
    for name, c in (("cov1", cov1), ("cov2", cov2)):
        if tuple(c.shape) != (d, d):
            raise UserError(f"{name} must have shape ({d}, {d}), got {tuple(c.shape)}")
    if mu2.shape[0] != d:
        raise UserError(f"mu1 and mu2 must have the same length, got {d} and {mu2.shape[0]}")
    s1 = _sqrt_psd(cov1)
    cross = torch.linalg.eigvalsh(s1 @ cov2 @ s1).clamp(min=0).sqrt().sum()
    return float((mu1 - mu2).square().sum() + cov1.trace() + cov2.trace() - 2 * cross)


def extract_features(x: Tensor, features: FeatureSpec = "digits") -> Tensor:
    """(N, D) float64 features: "digits" (the shipped classifier), "raw"/None (flattened x), or a
    callable mapping a batch to (N, D)."""
    if features == "digits":
        from .classifier import digits_features

        return digits_features(x)
    if features is None or features == "raw":
        return x.reshape(x.shape[0], -1).to(torch.float64)
    if callable(features):
        with torch.no_grad():
            out = features(x)
        return out.reshape(out.shape[0], -1).to(torch.float64)
    raise UserError(f"features must be 'digits', 'raw', None or a callable, got {features!r}")


def frechet_distance(x: Tensor, y: Tensor, features: FeatureSpec = "digits") -> float:
    """FD between Gaussian fits to the features of two sample sets (FID-style, lower is closer)."""
    fx, fy = extract_features(x, features), extract_features(y, features)
    if fx.shape[1] != fy.shape[1]:
        raise UserError(f"feature sizes differ: {fx.shape[1]} and {fy.shape[1]}")
    return frechet_distance_from_stats(*gaussian_stats(fx), *gaussian_stats(fy))
