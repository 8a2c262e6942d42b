"""Frechet distance between Gaussians fitted to features (FID's formula, Heusel et al. 2017).

    FD = |mu_1 - mu_2|^2 + tr(C_1 + C_2 - 2 (C_1^{1/2} C_2 C_1^{1/2})^{1/2})

The trace term is computed from eigenvalues: with S = C_1^{1/2} (symmetric, from ``eigh``),
``S C_2 S`` is symmetric PSD and has the eigenvalues of ``C_1 C_2``, so
``tr (C_1 C_2)^{1/2} = sum sqrt(eig(S C_2 S))``; no non-symmetric ``sqrtm``, no complex parts.
Features default to the project's own digit classifier ("digits"); FID proper uses the
Inception-v3 of :mod:`interpolant.metrics.inception` with weights the user provides (pass
``features=inception_features(path)``).

KID (Binkowski et al. 2018, "Demystifying MMD GANs", sec. 3 / App. D): the unbiased squared MMD
with the cubic polynomial kernel ``k(a, b) = (a.b / d + 1)^3`` on d-dimensional features,
averaged over random subsets (100 of 1000 in the paper and in torch-fidelity).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import UserError
from ..randomness import derive_seed

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


# ----------------------------------------------------------------------------- KID


@dataclass(frozen=True)
class KID:
    """Kernel inception distance: ``value`` the mean of the subset estimates, ``std`` their
    standard deviation (what papers print as KID +- std), ``stderr`` = std / sqrt(n_subsets),
    the standard error of the mean over independent subsets. When a subset is the whole set
    (``subset_size >= N``) every subset is the same and the spread is 0: draw subsets well
    below N for an error bar."""

    value: float
    std: float
    stderr: float
    n_subsets: int
    subset_size: int


def polynomial_mmd2(fx: Tensor, fy: Tensor, degree: int = 3, coef: float = 1.0) -> float:
    """Unbiased squared MMD (Gretton et al. 2012, Eq. 3) with ``k(a, b) = (a.b / d + coef)^degree``:
    the within-set means leave out the i = j terms."""
    fx, fy = fx.to(torch.float64), fy.to(torch.float64)
    n, m, d = fx.shape[0], fy.shape[0], fx.shape[1]
    if n < 2 or m < 2:
        raise UserError(f"KID needs at least 2 samples per set, got {n} and {m}")
    kxx = (fx @ fx.T / d + coef) ** degree
    kyy = (fy @ fy.T / d + coef) ** degree
    kxy = (fx @ fy.T / d + coef) ** degree
    within_x = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    within_y = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(within_x + within_y - 2 * kxy.mean())


def kernel_inception_distance(
    x: Tensor,
    y: Tensor,
    features: FeatureSpec = "digits",
    n_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> KID:
    """KID between two sample sets in a feature space (Inception: ``inception_features(path)``).

    Each of ``n_subsets`` draws ``min(subset_size, N, M)`` samples of each set without
    replacement (a generator seeded from ``seed``, stream "kid") and computes
    :func:`polynomial_mmd2`; the result is their mean, spread and standard error.
    """
    if not isinstance(n_subsets, int) or n_subsets < 1:
        raise UserError(f"n_subsets must be an int >= 1, got {n_subsets!r}")
    if not isinstance(subset_size, int) or subset_size < 2:
        raise UserError(f"subset_size must be an int >= 2, got {subset_size!r}")
    fx, fy = extract_features(x, features), extract_features(y, features)
    if fx.shape[1] != fy.shape[1]:
        raise UserError(f"feature sizes differ: {fx.shape[1]} and {fy.shape[1]}")
    size = min(subset_size, fx.shape[0], fy.shape[0])
    g = torch.Generator().manual_seed(derive_seed("kid", seed))
    values = torch.tensor(
        [
            polynomial_mmd2(
                fx[torch.randperm(fx.shape[0], generator=g)[:size]],
                fy[torch.randperm(fy.shape[0], generator=g)[:size]],
            )
            for _ in range(n_subsets)
        ],
        dtype=torch.float64,
    )
    std = float(values.std()) if n_subsets > 1 else float("nan")
    return KID(float(values.mean()), std, std / math.sqrt(n_subsets), n_subsets, size)
