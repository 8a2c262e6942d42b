"""What every guidance hook shares: time-dependent scales with a guidance interval, re-evaluating
a model at a node (counted in the NFE), and adding a term to the score through the prediction
algebra, so a hook works for every prediction kind, every Gaussian path and every solver.

A guidance term ``g = grad_x log p(y | x_t)`` changes the score, ``s' = s + w g``; with
``s = -eps / sigma`` that is ``eps' = eps - w sigma g`` (Dhariwal & Nichol 2021, eq. 14), and
every other kind follows from (x_t, eps') by the path's conversions (for x0: Tweedie,
``x0' = x0 + w sigma^2 g / alpha``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..paths import PFGM, GaussianPath
from ..predictions import Model, Prediction
from ..solvers.base import Node
from .._porting import SampleContext

#: Shapes of the scale schedule s(t) on [0, 1] (t = 0 data, t = 1 noise); each has mean 1 over
#: [0, 1], so a schedule moves guidance between noise levels at an unchanged average strength
#: (Wang et al. 2024, "Analysis of classifier-free guidance weight schedulers": linear and
#: cosine schedules that grow as the noise falls).
SCHEDULES: dict[str, Callable[[float], float]] = {
    "constant": lambda t: 1.0,
    "linear": lambda t: 2.0 * (1.0 - t),
    "cosine": lambda t: 1.0 + math.cos(math.pi * t),
}


class GuidanceScale:
    """A guidance weight as a function of t: ``w(t) = off + (scale - off) s(t)`` inside the
    interval ``[t_lo, t_hi]`` and ``w(t) = off`` outside it.

    ``off`` is the weight that means "no guidance": 1 for CFG/autoguidance (the conditional
    model itself), 0 for additive guidance (classifier, reconstruction, self-guidance). A
    callable ``schedule(t) -> float`` replaces the named shapes and gives w(t) itself (the
    interval still applies). The interval follows Kynkäänniemi et al. 2024 (guidance only in a
    limited range of noise levels).
    """

    def __init__(
        self,
        scale: float,
        schedule: str | Callable[[float], float] = "constant",
        interval: tuple[float, float] = (0.0, 1.0),
        off: float = 0.0,
    ) -> None:
        if not isinstance(scale, int | float) or not math.isfinite(scale):
            raise ValueError(f"scale must be a finite number, got {scale!r}")
        if isinstance(schedule, str) and schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {sorted(SCHEDULES)} or a callable of t")
        if not isinstance(schedule, str) and not callable(schedule):
            raise ValueError(f"schedule must be a name or a callable of t, got {schedule!r}")
        lo, hi = (float(v) for v in interval)
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"interval must satisfy 0 <= t_lo <= t_hi <= 1, got {interval}")
        self.scale, self.schedule, self.interval, self.off = float(scale), schedule, (lo, hi), off

    def __call__(self, t: float) -> float:
        lo, hi = self.interval
        if not lo <= t <= hi:
            return self.off
        if callable(self.schedule):
            return float(self.schedule(t))
        return self.off + (self.scale - self.off) * SCHEDULES[self.schedule](t)

    def __repr__(self) -> str:
        name = self.schedule if isinstance(self.schedule, str) else "callable"
        return f"GuidanceScale({self.scale:g}, {name}, interval={self.interval})"


def as_scale(
    scale: float | GuidanceScale,
    schedule: str | Callable[[float], float],
    interval: tuple[float, float],
    off: float,
) -> GuidanceScale:
    """``scale`` as a :class:`GuidanceScale` (a given one is used as it is)."""
    if isinstance(scale, GuidanceScale):
        return scale
    return GuidanceScale(scale, schedule, interval, off)


def model_dtype(net: Any, like: Tensor) -> torch.dtype:
    """The dtype a network computes in: that of its first floating parameter, else ``like``'s."""
    if isinstance(net, nn.Module):
        for p in net.parameters():
            if p.is_floating_point():
                return p.dtype
    return like.dtype


def evaluate(
    model: Model, x: Tensor, node: Node, cond: dict[str, Any], sctx: SampleContext
) -> Prediction:
    """The model's prediction at (x, node) with ``cond``, as the loop would make it (x in the
    network's dtype, the value back in x's dtype, the node's coefficients), counted as one NFE.
    Differentiable in x when grad mode is on."""
    sctx.nfe += 1
    dtype = model_dtype(model.net, x)
    t_batch = torch.full((x.shape[0],), node.t, device=x.device, dtype=dtype)
    value = model.net(x if x.dtype == dtype else x.to(dtype), t_batch, **cond)
    if value.shape != x.shape:
        raise ValueError(f"model returned shape {tuple(value.shape)} for x of {tuple(x.shape)}")
    return Prediction(x, node.t, model.predicts, value.to(x.dtype), node.coeffs)


def check_score_path(path: GaussianPath, argument: str = "model") -> None:
    """Raise unless ``-eps / sigma`` is the score of the path's marginals (Gaussian kernels)."""
    if isinstance(path, PFGM) and math.isfinite(path.D):
        raise ValueError(
            f"{argument} is on a PFGM++ path with D = {path.D:g}: its perturbation kernel is a "
            "Student-t, so -eps / sigma is not the score of its marginals and score-based "
            "guidance is undefined; use D = inf (EDM) or CFG/autoguidance, which need no score"
        )


def add_to_score(pred: Prediction, grad: Tensor, weight: float) -> Prediction:
    """``pred`` with ``weight * grad`` added to its score, returned in ``pred``'s own kind.

    Where alpha = 0, x_t carries no information about x0 (any likelihood term has zero
    gradient); where sigma = 0 the score is undefined: there ``pred`` is returned unchanged.
    """
    c = pred.coeffs
    alpha, sigma = c.alpha, c.sigma
    if weight == 0 or _is_zero(alpha) or _is_zero(sigma):
        return pred
    guided = pred.replace("eps", pred.eps - weight * sigma * grad.to(pred.eps.dtype))
    return pred.replace(pred.kind, guided.get(pred.kind))


def _is_zero(c: float | Tensor) -> bool:
    """True when a coefficient (float or per-sample tensor) is 0 everywhere."""
    return bool((c == 0).all()) if isinstance(c, Tensor) else c == 0
