"""Smoothness of the noise-to-sample map (Smooth Diffusion, Guo et al. 2024, Sec. 4).

ISTD, the interpolation standard deviation: for a pair of starting noises (z0, z1), n points
spherically interpolated between them, z(a_k) = slerp(z0, z1, a_k) with a_k = k / (n - 1), are
sampled with a deterministic sampler; the n - 1 distances between consecutive samples,

    d_k = || x(a_{k+1}) - x(a_k) ||_2,

have a standard deviation that is 0 when the map moves the sample at a constant rate along the
interpolation (a smooth latent space) and large when it jumps once, where the trajectory switches
mode. ISTD is the mean of that standard deviation over pairs. The paper measures d_k with LPIPS
on images; L2 is used here (LPIPS cannot ship its weights).

For an isotropic linear map x = c z (the exact ODE map of isotropic Gaussian data) and noises of
equal norm the chords of equally spaced slerp points are all equal, so ISTD = 0 exactly.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..errors import UserError


def slerp(z0: Tensor, z1: Tensor, a: Tensor | float) -> Tensor:
    """Spherical interpolation per row: sin((1-a) w)/sin(w) z0 + sin(a w)/sin(w) z1, with w the
    angle between the flattened rows (linear interpolation where they are parallel)."""
    if z0.shape != z1.shape:
        raise UserError(f"slerp needs equal shapes, got {tuple(z0.shape)} and {tuple(z1.shape)}")
    flat0, flat1 = z0.flatten(1).double(), z1.flatten(1).double()
    cos = (flat0 * flat1).sum(1) / (flat0.norm(dim=1) * flat1.norm(dim=1)).clamp_min(1e-300)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    a_t = torch.as_tensor(a, dtype=torch.float64, device=z0.device)
    sin = torch.sin(omega)
    parallel = sin.abs() < 1e-12
    safe = torch.where(parallel, torch.ones_like(sin), sin)
    w0 = torch.where(parallel, 1 - a_t, torch.sin((1 - a_t) * omega) / safe)
    w1 = torch.where(parallel, a_t, torch.sin(a_t * omega) / safe)
    shape = (-1,) + (1,) * (z0.ndim - 1)
    return (w0.view(shape) * z0.double() + w1.view(shape) * z1.double()).to(z0.dtype)


def interpolation_path(z0: Tensor, z1: Tensor, n: int = 11) -> Tensor:
    """The n slerp points between each pair: shape (pairs, n, ...)."""
    if n < 3:
        raise UserError(f"an interpolation needs n >= 3 points, got {n}")
    return torch.stack([slerp(z0, z1, k / (n - 1)) for k in range(n)], dim=1)


def interpolation_std(samples: Tensor) -> Tensor:
    """Per pair, the std (population) of consecutive L2 distances of ``samples`` of shape
    (pairs, n, ...) along the interpolation."""
    if samples.ndim < 3 or samples.shape[1] < 3:
        raise UserError(f"samples must have shape (pairs, n >= 3, ...), got {tuple(samples.shape)}")
    steps = (samples[:, 1:] - samples[:, :-1]).flatten(2).double().norm(dim=2)
    return steps.std(dim=1, unbiased=False)


def istd(model: Any, z0: Tensor, z1: Tensor, sampler: Any, n: int = 11) -> float:
    """ISTD of ``model`` sampled with the deterministic ``sampler`` (a :class:`Sampler` spec)
    over the pairs (z0[i], z1[i]) of standard normal starting noises (as ``sample`` takes
    them)."""
    from ..solvers import as_sampler, sample

    spec = as_sampler(sampler)
    if spec.solver.stochastic:
        raise UserError(f"ISTD needs a deterministic sampler; {spec.solver!r} draws noise")
    path = interpolation_path(z0, z1, n)
    flat = path.reshape(-1, *z0.shape[1:])
    with torch.no_grad():
        x = sample(model, flat, spec).x
    return float(interpolation_std(x.reshape(path.shape)).mean())


__all__ = ["interpolation_path", "interpolation_std", "istd", "slerp"]
