"""What every guidance hook shares: time-dependent scales with a guidance interval, and adding a
term to the score through the prediction algebra, so a hook works for every prediction kind,
every Gaussian path and every solver. Extra model evaluations go through ``Model.at`` on the run,
so they count in ``run.nfe``.

A guidance term ``g = grad_x log p(y | x_t)`` changes the score, ``s' = s + w g``; with
``s = -eps / sigma`` that is ``eps' = eps - w sigma g`` (Dhariwal & Nichol 2021, eq. 14), and
every other kind follows from (x_t, eps') by the path's conversions (for x0: Tweedie,
``x0' = x0 + w sigma^2 g / alpha``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import Tensor

from ..errors import UserError, WrongTypeError
from ..paths import PFGM, GaussianPath
from ..predictions import Prediction

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
        if isinstance(scale, bool) or not isinstance(scale, int | float):
            raise WrongTypeError(f"scale must be a number, got {scale!r}")
        if not math.isfinite(scale):
            raise UserError(f"scale must be a finite number, got {scale!r}")
        if isinstance(schedule, str) and schedule not in SCHEDULES:
            raise UserError(f"schedule must be one of {sorted(SCHEDULES)} or a callable of t")
        if not isinstance(schedule, str) and not callable(schedule):
            raise WrongTypeError(f"schedule must be a name or a callable of t, got {schedule!r}")
        lo, hi = (float(v) for v in interval)
        if not 0.0 <= lo <= hi <= 1.0:
            raise UserError(f"interval must satisfy 0 <= t_lo <= t_hi <= 1, got {interval}")
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


def check_score_path(path: GaussianPath, argument: str = "model") -> None:
    """Raise unless ``-eps / sigma`` is the score of the path's marginals (Gaussian kernels)."""
    if isinstance(path, PFGM) and math.isfinite(path.D):
        raise UserError(
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
