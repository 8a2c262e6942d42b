"""Exact 1-D/ d-D isotropic Gaussian data N(m, s^2 I) on the linear path: the flow map, the
marginal velocity and the average velocity in closed form (test helpers)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from interpolant.paths import Linear
from interpolant.predictions import Model


def sigma_t(t: Tensor, s: float) -> Tensor:
    """std of x_t = (1 - t) x0 + t eps for x0 ~ N(m, s^2)."""
    return ((1 - t) ** 2 * s**2 + t**2).sqrt()


def flow(z: Tensor, t: Tensor, r: Tensor, m: float, s: float) -> Tensor:
    """The probability-flow map from (z, t) to time r."""
    shape = (-1, *([1] * (z.ndim - 1)))
    t, r = t.double().view(shape), r.double().view(shape)
    y = (z.double() - (1 - t) * m) / sigma_t(t, s)
    return (1 - r) * m + sigma_t(r, s) * y


def velocity(z: Tensor, t: Tensor, m: float, s: float) -> Tensor:
    shape = (-1, *([1] * (z.ndim - 1)))
    t = t.double().view(shape)
    d_sigma = (t - (1 - t) * s**2) / sigma_t(t, s)
    return -m + d_sigma * (z.double() - (1 - t) * m) / sigma_t(t, s)


class AverageVelocity(nn.Module):
    """u(z, t, gap) = (z - flow(z, t, t - gap)) / gap (the velocity at gap = 0), plus ``bias``
    times a fixed perturbation (a one-parameter family around the exact field)."""

    def __init__(self, m: float, s: float) -> None:
        super().__init__()
        self.m, self.s = m, s
        self.bias = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, z: Tensor, t: Tensor, gap: Tensor | float | None = None) -> Tensor:
        g = torch.zeros_like(t) if gap is None else torch.as_tensor(gap).to(t).expand(t.shape)
        shape = (-1, *([1] * (z.ndim - 1)))
        safe = torch.where(g > 1e-9, g, torch.ones_like(g))
        avg = (z.double() - flow(z, t, t - safe, self.m, self.s)) / safe.double().view(shape)
        exact = torch.where(g.view(shape) > 1e-9, avg, velocity(z, t, self.m, self.s))
        perturb = torch.sin(3 * z.double()) * (1 + t.double().view(shape))
        return (exact + self.bias * perturb).to(z.dtype)


def average_velocity_model(m: float, s: float) -> Model:
    return Model(AverageVelocity(m, s), Linear(), predicts="velocity")


class OneStepMap(nn.Module):
    """The exact one-step student u(eps, 1) = eps - (m + s eps) (exact at t = 1 only) and the
    exact 2-RF teacher of the pairs x0 = m + s eps at every t, plus ``bias``."""

    def __init__(self, m: float, s: float) -> None:
        super().__init__()
        self.m, self.s = m, s
        self.bias = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        shape = (-1, *([1] * (x.ndim - 1)))
        tb = t.double().view(shape)
        eps = (x.double() - (1 - tb) * self.m) / ((1 - tb) * self.s + tb)
        return ((1 - self.s) * eps - self.m + self.bias * torch.cos(x.double())).to(x.dtype)
