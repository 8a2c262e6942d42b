"""One-step flows with a second time input: MeanFlow and shortcut models, on the linear path
x_t = (1 - t) x0 + t eps (t = 1 noise, the convention of both papers), v = eps - x0.

Both train a network ``net(x, t, gap=g)`` whose output is the average velocity over
[t - g, t]; at g = 0 it is the instantaneous velocity, so ``Model(net, Linear(), "velocity")``
with the default gap = 0 is an ordinary flow that any of our solvers samples. A step from t to
r = t - g is x_r = x_t - g u(x_t, t, g) (:func:`interval_sample`; 1 step: x0 = eps - u(eps, 1, 1)).

**MeanFlow (Geng et al. 2025, Eq. 6-10).** u(z_t, r, t) = 1/(t - r) int_r^t v(z_tau, tau) dtau
satisfies the MeanFlow identity

    u(z_t, r, t) = v(z_t, t) - (t - r) d/dt u(z_t, r, t),   d/dt u = v . d_z u + d_t u,

so the loss is |u_theta - sg(v - (t - r) (v . d_z u_theta + d_t u_theta))|^2 with v = eps - x0
and the total derivative from one forward-mode JVP (``torch.func.jvp``) along the tangent
(dz, dt, dgap) = (v, 1, 1) (gap = t - r, dr = 0). Adaptive weight w = 1/(|Delta|^2 + c)^p
(p = 1, Eq. 11), (t, r) from two logit-normal(-0.4, 1) draws sorted, r = t for a fraction
1 - ``ratio_r_neq_t`` (75% in the paper). The JVP runs on the network itself as a
stop-gradient target; the trained prediction is a second, ordinary forward (one extra
forward compared with the paper, so that the gradient goes through the trainer's DDP
wrapper).

**Shortcut models (Frans et al. 2024, Eq. 5).** s(x_t, t, d) with step size d in
{0} U {1/M, 2/M, ..., 1}, M = 2^m: flow matching at d = 0, and self-consistency

    s(x_t, t, 2d) = sg((s(x_t, t, d) + s(x_{t-d}, t - d, d)) / 2),
    x_{t-d} = x_t - d s(x_t, t, d),

on a fraction ``consistency_fraction`` of the batch (1/4 in the paper) with t on the grid of
multiples of 2d (so t - 2d >= 0).
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import Tensor

from ..errors import UserError
from ..models import TwoTime
from ..paths import Linear
from ..paths.nodes import make_nodes
from ..predictions import Evaluations, Model
from .common import predict, require_linear, times


def interval_model(dim: int, width: int = 256, depth: int = 3) -> Model:
    """A velocity model on the linear path whose network takes the gap: the registered
    ``two-time`` backbone around an ``mlp`` (:class:`~interpolant.models.TwoTime`)."""
    net = TwoTime({"name": "mlp", "dim": dim, "width": width, "depth": depth})
    return Model(net, Linear(), predicts="velocity")


def interval_sample(model: Model, noise: Tensor, steps: int, **cond: Any) -> tuple[Tensor, int]:
    """K uniform steps x_r = x_t - (t - r) u(x_t, t, t - r) from t = 1; returns (x0, NFE).
    Every evaluation goes through :meth:`Model.at` (counted)."""
    if not (isinstance(steps, int) and steps >= 1):
        raise UserError(f"steps must be a positive integer, got {steps!r}")
    grid = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    nodes = make_nodes(model.path, grid)
    counter = Evaluations(cond)
    x = noise
    for now, nxt in itertools.pairwise(nodes):
        gap = now.t - nxt.t
        u = model.at(x, now, counter, {**cond, "gap": gap}).velocity
        x = x - gap * u
    return x, counter.nfe


def _logit_normal(n: int, generator: Any, device: Any, mean: float, std: float) -> Tensor:
    gen_device = generator.device if generator is not None else device
    z = torch.randn(n, generator=generator, device=gen_device, dtype=torch.float64).to(device)
    return torch.sigmoid(mean + std * z)


class MeanFlow:
    """The MeanFlow objective (see the module docstring)."""

    def __init__(
        self,
        ratio_r_neq_t: float = 0.25,
        time_mean: float = -0.4,
        time_std: float = 1.0,
        power: float = 1.0,
        c: float = 1e-3,
    ) -> None:
        if not 0.0 <= ratio_r_neq_t <= 1.0:
            raise UserError(f"ratio_r_neq_t must be in [0, 1], got {ratio_r_neq_t}")
        self.ratio, self.mean, self.std, self.power, self.c = (
            ratio_r_neq_t,
            time_mean,
            time_std,
            power,
            c,
        )

    def per_sample_loss(
        self,
        model: Any,
        x0: Tensor,
        generator: torch.Generator | None = None,
        cond: dict[str, Any] | None = None,
    ) -> Tensor:
        require_linear(model, "model", "MeanFlow")
        n, cond = x0.shape[0], dict(cond or {})
        a = _logit_normal(n, generator, x0.device, self.mean, self.std)
        b = _logit_normal(n, generator, x0.device, self.mean, self.std)
        t, r = torch.maximum(a, b), torch.minimum(a, b)
        same = times(n, generator, x0.device) >= self.ratio
        r = torch.where(same, t, r)
        t, gap = t.to(x0.dtype), (t - r).to(x0.dtype)
        eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        z = Linear().sample_xt(x0, t, eps)
        v = eps - x0
        inner = getattr(model, "module", model)

        def average_velocity(z_: Tensor, t_: Tensor, gap_: Tensor) -> Tensor:
            return inner.net(z_, t_, gap=gap_, **cond)

        with torch.no_grad():
            dudt = torch.func.jvp(
                average_velocity, (z, t, gap), (v, torch.ones_like(t), torch.ones_like(gap))
            )[1]
        u = predict(model, z, t, {**cond, "gap": gap}).velocity
        target = (v - gap.view(-1, *([1] * (x0.ndim - 1))) * dudt).detach()
        err = (u - target).square().flatten(1).sum(dim=1)
        w = 1.0 / (err.detach() + self.c) ** self.power
        return w * err

    def loss(self, model: Any, x0: Tensor, generator: Any = None, cond: Any = None) -> Tensor:
        return self.per_sample_loss(model, x0, generator, cond).mean()


def _rows(cond: dict[str, Any], rows: slice, n: int) -> dict[str, Any]:
    """The conditioning of a subset of the batch's rows (per-row tensors sliced, the rest kept)."""
    return {
        key: value[rows] if isinstance(value, Tensor) and value.ndim and len(value) == n else value
        for key, value in cond.items()
    }


class Shortcut:
    """The shortcut-model objective (see the module docstring); ``log2_steps`` m gives the
    finest step 1/2^m."""

    def __init__(self, log2_steps: int = 7, consistency_fraction: float = 0.25) -> None:
        if not (isinstance(log2_steps, int) and log2_steps >= 1):
            raise UserError(f"log2_steps must be a positive integer, got {log2_steps!r}")
        if not 0.0 < consistency_fraction < 1.0:
            raise UserError(f"consistency_fraction must be in (0, 1), got {consistency_fraction}")
        self.m, self.fraction = log2_steps, consistency_fraction

    def per_sample_loss(
        self,
        model: Any,
        x0: Tensor,
        generator: torch.Generator | None = None,
        cond: dict[str, Any] | None = None,
    ) -> Tensor:
        require_linear(model, "model", "shortcut models")
        n, cond = x0.shape[0], dict(cond or {})
        k = max(1, round(n * self.fraction))
        shape = (-1, *([1] * (x0.ndim - 1)))
        eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        # Flow-matching part (d = 0) on rows k..n.
        t_fm = times(n - k, generator, x0.device).to(x0.dtype)
        x_fm = Linear().sample_xt(x0[k:], t_fm, eps[k:])
        # gap = 0 explicitly: a two-time backbone's default gap is that of its K-step grid.
        cond_fm, cond_sc = _rows(cond, slice(k, n), n), _rows(cond, slice(0, k), n)
        s_fm = predict(model, x_fm, t_fm, {**cond_fm, "gap": torch.zeros_like(t_fm)}).velocity
        fm = (s_fm - (eps[k:] - x0[k:])).square().flatten(1).mean(dim=1)
        # Self-consistency on rows 0..k: d = 2^-j, j in 0..m-1, t a multiple of 2d in (0, 1].
        gen_device = generator.device if generator is not None else None
        j = torch.randint(0, self.m, (k,), generator=generator, device=gen_device).to(x0.device)
        d = (0.5 ** (j + 1).double()).to(x0.device)  # the half step; the target step is 2d
        slots = (1.0 / (2 * d)).round()
        u = times(k, generator, x0.device).double()
        t = ((u * slots).floor() + 1) * 2 * d
        t, d = t.to(x0.dtype), d.to(x0.dtype)
        x_t = Linear().sample_xt(x0[:k], t, eps[:k])
        with torch.no_grad():
            s1 = predict(model, x_t, t, {**cond_sc, "gap": d}).velocity
            x_mid = x_t - d.view(shape) * s1
            s2 = predict(model, x_mid, t - d, {**cond_sc, "gap": d}).velocity
            target = (s1 + s2) / 2
        s_big = predict(model, x_t, t, {**cond_sc, "gap": 2 * d}).velocity
        sc = (s_big - target).square().flatten(1).mean(dim=1)
        return torch.cat([sc, fm])

    def loss(self, model: Any, x0: Tensor, generator: Any = None, cond: Any = None) -> Tensor:
        return self.per_sample_loss(model, x0, generator, cond).mean()
