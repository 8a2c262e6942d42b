"""Loss weightings w(t): the factor on the squared error **in the target kind's space**.

The per-sample loss of an objective with target kind ``k`` is ``w(t) * mean((k_hat - k)^2)``.
Since every kind is affine in x0_hat at fixed x_t, ``(k_hat - k)^2 = K_k(t) (x0_hat - x0)^2`` with
the x0-space factor ``K_k = (d k / d x0 at fixed x_t)^2``:

=========  =============================================  =========================
target k   K_k(t)                                         VP paths (alpha^2+sigma^2=1)
=========  =============================================  =========================
x0         1                                              1
eps        SNR = alpha^2 / sigma^2                        SNR
v          (alpha^2 + sigma^2)^2 / sigma^2                SNR + 1
velocity   (alpha' - sigma' alpha / sigma)^2               (path dependent)
score      alpha^2 / sigma^4                              SNR / sigma^2
=========  =============================================  =========================

``K_k`` is computed from the conversion algebra of ``predictions`` (never written out again).
``uniform`` is the plain MSE on the target (w = 1). The other weightings are defined by an
*x0-space* weight lambda(t) and applied as ``w_k = lambda / K_k``, so they mean the same effective
weighting whatever the target:

* ``snr``: lambda = SNR (the eps-MSE of DDPM's L_simple, whatever the target);
* ``min-snr-gamma`` (Hang et al. 2023): lambda = min(SNR, gamma), i.e. w_x0 = min(SNR, gamma),
  w_eps = min(SNR, gamma) / SNR, w_v = min(SNR, gamma) / (SNR + 1) on VP paths (as in their paper),
  w_velocity = min(SNR, gamma) / K_velocity;
* ``edm`` (Karras et al. 2022, Table 1): lambda(sigma) = (sigma^2 + sigma_data^2) /
  (sigma sigma_data)^2 with sigma = sigma / alpha (``predictions.edm_loss_weight``).

Where logsnr < 0 the same weight is computed in eps space (``lambda / SNR`` over the eps-space
factor), so the end points alpha = 0 and sigma = 0 give finite limits instead of 0 / 0.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..paths import GaussianPath
from ..predictions import check_kind, convert, edm_loss_weight
from .time import TimeSampler, time_from_config


def kind_factor(path: GaussianPath, t: Tensor, target: str, per: str = "x0") -> Tensor:
    """(d target / d ``per`` at fixed x_t)^2 per sample, ``per`` in {x0, eps} (float64)."""
    t = t.to(torch.float64)
    unit = torch.ones(t.shape[0], 1, dtype=torch.float64, device=t.device)
    slope = convert(unit, per, check_kind(target, "target"), torch.zeros_like(unit), t, path)
    return slope[:, 0] ** 2


class Weighting(ABC):
    """w(t) multiplying the squared error in the target kind's space."""

    name: ClassVar[str] = "weighting"

    @abstractmethod
    def __call__(self, path: GaussianPath, t: Tensor, target: str) -> Tensor:
        """Per-sample weights (float64, shape of t) for a loss on ``target``."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-serialisable description; ``weight_from_config`` rebuilds the weighting."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class UniformWeight(Weighting):
    """w = 1: the plain mean squared error on the target."""

    name = "uniform"

    def __call__(self, path: GaussianPath, t: Tensor, target: str) -> Tensor:
        check_kind(target, "target")
        return torch.ones_like(t, dtype=torch.float64)

    def config(self) -> dict[str, Any]:
        return {"name": self.name}


class X0SpaceWeighting(Weighting):
    """A weighting defined by its x0-space weight lambda(t), applied as lambda / K_target."""

    @abstractmethod
    def x0_weight(self, path: GaussianPath, t: Tensor) -> Tensor:
        """lambda(t): the factor on (x0_hat - x0)^2."""

    @abstractmethod
    def eps_weight(self, path: GaussianPath, t: Tensor) -> Tensor:
        """lambda(t) / SNR(t): the same weighting as a factor on (eps_hat - eps)^2."""

    def __call__(self, path: GaussianPath, t: Tensor, target: str) -> Tensor:
        t = t.to(torch.float64)
        from_x0 = self.x0_weight(path, t) / kind_factor(path, t, target, "x0")
        from_eps = self.eps_weight(path, t) / kind_factor(path, t, target, "eps")
        # Each form is finite on its side of logsnr = 0 (the other may be 0/0 at an end point).
        return torch.where(path.logsnr(t) >= 0, from_x0, from_eps)


class SNRWeight(X0SpaceWeighting):
    """lambda = SNR(t) = exp(logsnr): equal to the unweighted eps-MSE for any target."""

    name = "snr"

    def x0_weight(self, path: GaussianPath, t: Tensor) -> Tensor:
        return torch.exp(path.logsnr(t))

    def eps_weight(self, path: GaussianPath, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def config(self) -> dict[str, Any]:
        return {"name": self.name}


class MinSNR(X0SpaceWeighting):
    """Min-SNR-gamma (Hang et al. 2023): lambda = min(SNR, gamma) in x0 space."""

    name = "min-snr"

    def __init__(self, gamma: float = 5.0) -> None:
        if not gamma > 0:
            raise ValueError(f"gamma must be > 0, got {gamma}")
        self.gamma = float(gamma)

    def x0_weight(self, path: GaussianPath, t: Tensor) -> Tensor:
        return torch.exp(path.logsnr(t)).clamp(max=self.gamma)

    def eps_weight(self, path: GaussianPath, t: Tensor) -> Tensor:
        return (self.gamma * torch.exp(-path.logsnr(t))).clamp(max=1.0)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "gamma": self.gamma}


class EDMWeight(X0SpaceWeighting):
    """EDM's lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 in x0 space, with the
    EDM noise level sigma / alpha, so that with EDM preconditioning the effective network target
    has unit variance (Karras et al. 2022, sec. 5)."""

    name = "edm"

    def __init__(self, sigma_data: float = 0.5) -> None:
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be > 0, got {sigma_data}")
        self.sigma_data = float(sigma_data)

    def x0_weight(self, path: GaussianPath, t: Tensor) -> Tensor:
        return edm_loss_weight(path, t, self.sigma_data)

    def eps_weight(self, path: GaussianPath, t: Tensor) -> Tensor:
        return edm_loss_weight(path, t, self.sigma_data) * torch.exp(-path.logsnr(t))

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "sigma_data": self.sigma_data}


class DensityWeight(Weighting):
    """w(t) = pi(t), the density of a time sampler, on the target-space error.

    With t ~ U[0, 1] this has the expected loss of sampling t ~ pi unweighted (Esser et al. 2024,
    sec. 3.1: w^pi = pi(t)); the two estimators differ only in variance.
    """

    name = "density"

    def __init__(self, time: TimeSampler) -> None:
        if not isinstance(time, TimeSampler):
            raise TypeError(f"time must be a TimeSampler, got {type(time).__name__}")
        self.time = time

    def __call__(self, path: GaussianPath, t: Tensor, target: str) -> Tensor:
        check_kind(target, "target")
        return self.time.with_path(path).pdf(t.to(torch.float64))

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "time": self.time.config()}


class CallableWeight(Weighting):
    """A user function ``fn(path, t, target) -> (B,)`` on the target-space error (not
    serialisable: subclass :class:`Weighting` to store it in a config)."""

    name = "callable"

    def __init__(self, fn: Callable[[GaussianPath, Tensor, str], Tensor]) -> None:
        self.fn = fn

    def __call__(self, path: GaussianPath, t: Tensor, target: str) -> Tensor:
        return torch.as_tensor(self.fn(path, t, target), dtype=torch.float64)

    def config(self) -> dict[str, Any]:
        raise ValueError("a CallableWeight cannot be serialised; subclass Weighting instead")


WEIGHTINGS: dict[str, type[Weighting]] = {
    cls.name: cls for cls in (UniformWeight, SNRWeight, MinSNR, EDMWeight, DensityWeight)
}


def get_weighting(weight: str | Weighting | Callable[..., Tensor] | None) -> Weighting:
    """A weighting from a name ("uniform", "snr", "min-snr" or "min-snr-<gamma>", "edm"), an
    object, or a callable ``fn(path, t, target)``."""
    if weight is None:
        return UniformWeight()
    if isinstance(weight, Weighting):
        return weight
    if isinstance(weight, str):
        name = weight.lower()
        if name in ("uniform", "snr", "edm", "min-snr"):
            return WEIGHTINGS[name]()
        if name.startswith("min-snr-"):
            try:
                return MinSNR(float(name[len("min-snr-") :]))
            except ValueError as err:
                raise ValueError(f"bad min-SNR weighting {weight!r}: {err}") from None
    elif callable(weight):
        return CallableWeight(weight)
    raise ValueError(
        "weight must be a Weighting, a callable fn(path, t, target), or one of 'uniform', 'snr', "
        f"'min-snr', 'min-snr-<gamma>', 'edm'; got {weight!r}"
    )


def weight_from_config(config: dict[str, Any]) -> Weighting:
    """Rebuild a weighting from its ``config()``."""
    config = dict(config)
    name = config.pop("name", None)
    if name not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {name!r}; choose one of {sorted(WEIGHTINGS)}")
    if name == "density":
        config["time"] = time_from_config(config["time"])
    return WEIGHTINGS[name](**config)


__all__ = [
    "WEIGHTINGS",
    "CallableWeight",
    "DensityWeight",
    "EDMWeight",
    "MinSNR",
    "SNRWeight",
    "UniformWeight",
    "Weighting",
    "X0SpaceWeighting",
    "get_weighting",
    "kind_factor",
    "weight_from_config",
]
