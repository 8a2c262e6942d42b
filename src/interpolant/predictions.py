"""Prediction kinds and their algebra on any Gaussian path.

A model declares what it predicts; given (x_t, t) and the path, any kind converts to any other:

=========  ==========================================  ==========================
kind       meaning                                     in terms of (x0, eps)
=========  ==========================================  ==========================
x0         denoised data E[x0 | x_t]                   x0
eps        source / noise E[eps | x_t]                 eps
velocity   probability-flow drift dx_t/dt              alpha' x0 + sigma' eps
score      grad log p_t(x_t)                           -eps / sigma
v          Salimans & Ho's v-prediction               alpha eps - sigma x0
=========  ==========================================  ==========================

and back, using x_t = alpha x0 + sigma eps (each inverse is a 2x2 linear solve):

* eps -> x0: ``x0 = (x - sigma eps) / alpha``
* velocity -> x0: ``x0 = (sigma' x - sigma u) / (alpha sigma' - sigma alpha')``
* v -> x0: ``x0 = (alpha x - sigma v) / (alpha^2 + sigma^2)``
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .paths import GaussianPath, as_time, expand_like

KINDS = ("x0", "eps", "velocity", "score", "v")

Scalar = float | Tensor


def check_kind(kind: str, argument: str = "kind") -> str:
    """Validate a prediction kind name."""
    if kind not in KINDS:
        raise ValueError(f"{argument} must be one of {KINDS}, got {kind!r}")
    return kind


@dataclass(frozen=True)
class Coefficients:
    """alpha, sigma and their time derivatives at one time (floats) or per sample (tensors
    already shaped to broadcast against x)."""

    alpha: Scalar
    sigma: Scalar
    d_alpha: Scalar
    d_sigma: Scalar

    @classmethod
    def at(cls, path: GaussianPath, t: float | Tensor, like: Tensor) -> Coefficients:
        """Coefficients of ``path`` at t, as floats for a scalar t or broadcast tensors for t of
        shape (B,), in the dtype of ``like``."""
        if isinstance(t, float | int) or (isinstance(t, Tensor) and t.ndim == 0):
            tt = as_time(torch.tensor(float(t), dtype=torch.float64))
            return cls(*(float(c) for c in path.coefficients(tt)))
        tt = as_time(t, like).to(torch.float64)
        a, s, da, ds = (expand_like(c.to(like.dtype), like) for c in path.coefficients(tt))
        return cls(a, s, da, ds)  # type: ignore[arg-type]


def to_x0(kind: str, value: Tensor, x: Tensor, c: Coefficients) -> Tensor:
    """The x0 (denoised data) implied by a prediction of ``kind``."""
    a, s, da, ds = c.alpha, c.sigma, c.d_alpha, c.d_sigma
    if kind == "x0":
        return value
    if kind == "eps":
        return (x - s * value) / a
    if kind == "score":
        return (x + s * s * value) / a
    if kind == "velocity":
        return (ds * x - s * value) / (a * ds - s * da)
    if kind == "v":
        return (a * x - s * value) / (a * a + s * s)
    raise ValueError(f"unknown prediction kind {kind!r}; choose one of {KINDS}")


def to_eps(kind: str, value: Tensor, x: Tensor, c: Coefficients) -> Tensor:
    """The eps (source) implied by a prediction of ``kind``."""
    a, s, da, ds = c.alpha, c.sigma, c.d_alpha, c.d_sigma
    if kind == "x0":
        return (x - a * value) / s
    if kind == "eps":
        return value
    if kind == "score":
        return -s * value
    if kind == "velocity":
        return (a * value - da * x) / (a * ds - s * da)
    if kind == "v":
        return (s * x + a * value) / (a * a + s * s)
    raise ValueError(f"unknown prediction kind {kind!r}; choose one of {KINDS}")


def from_x0_eps(kind: str, x0: Tensor, eps: Tensor, c: Coefficients) -> Tensor:
    """Express the pair (x0, eps) as a prediction of ``kind``."""
    if kind == "x0":
        return x0
    if kind == "eps":
        return eps
    if kind == "velocity":
        return c.d_alpha * x0 + c.d_sigma * eps
    if kind == "score":
        return -eps / c.sigma
    if kind == "v":
        return c.alpha * eps - c.sigma * x0
    raise ValueError(f"unknown prediction kind {kind!r}; choose one of {KINDS}")


def convert(
    value: Tensor,
    from_kind: str,
    to_kind: str,
    x: Tensor,
    t: float | Tensor,
    path: GaussianPath,
) -> Tensor:
    """Convert a prediction at (x_t, t) on ``path`` from one kind to another."""
    check_kind(from_kind, "from_kind")
    check_kind(to_kind, "to_kind")
    if from_kind == to_kind:
        return value
    c = Coefficients.at(path, t, x)
    if to_kind == "x0":
        return to_x0(from_kind, value, x, c)
    if to_kind == "eps":
        return to_eps(from_kind, value, x, c)
    return from_x0_eps(to_kind, to_x0(from_kind, value, x, c), to_eps(from_kind, value, x, c), c)


class Prediction:
    """One model output at (x_t, t), readable as any kind (computed on demand, then cached).

    ``x`` is the state the model saw, ``kind``/``value`` what it predicted, ``coeffs`` the path
    coefficients at t. Hooks build new predictions with :meth:`replace`.
    """

    __slots__ = ("_cache", "coeffs", "kind", "t", "value", "x")

    def __init__(
        self, x: Tensor, t: float | Tensor, kind: str, value: Tensor, coeffs: Coefficients
    ):
        self.x, self.t, self.kind, self.value, self.coeffs = x, t, kind, value, coeffs
        self._cache: dict[str, Tensor] = {kind: value}

    def get(self, kind: str) -> Tensor:
        """This prediction as ``kind``."""
        out = self._cache.get(kind)
        if out is None:
            if kind == "x0":
                out = to_x0(self.kind, self.value, self.x, self.coeffs)
            elif kind == "eps":
                out = to_eps(self.kind, self.value, self.x, self.coeffs)
            else:
                out = from_x0_eps(check_kind(kind), self.get("x0"), self.get("eps"), self.coeffs)
            self._cache[kind] = out
        return out

    @property
    def x0(self) -> Tensor:
        return self.get("x0")

    @property
    def eps(self) -> Tensor:
        return self.get("eps")

    @property
    def velocity(self) -> Tensor:
        return self.get("velocity")

    @property
    def score(self) -> Tensor:
        return self.get("score")

    @property
    def v(self) -> Tensor:
        return self.get("v")

    def replace(self, kind: str, value: Tensor) -> Prediction:
        """A new prediction at the same (x_t, t) with ``value`` of ``kind``; every other kind is
        derived from it."""
        return Prediction(self.x, self.t, check_kind(kind), value, self.coeffs)

    def override(self, **values: Tensor) -> Prediction:
        """A copy in which the given kinds take the given values and all others keep theirs.

        This decouples the fields, as with separately learned networks (e.g. a velocity b and a
        score s in Albergo et al. 2023, sec. 2): ``pred.override(velocity=b_hat)`` keeps the
        score of ``pred`` but uses ``b_hat`` wherever the velocity is read.
        """
        for kind in values:
            check_kind(kind)
        for kind in KINDS:
            self.get(kind)  # fix every untouched field before it could be derived from overrides
        out = Prediction(self.x, self.t, self.kind, self.value, self.coeffs)
        out._cache = {**self._cache, **values}
        return out


class Model(nn.Module):
    """Any callable ``net(x_t, t, **cond)`` that predicts ``predicts`` on ``path``.

    ``net`` receives t of shape (B,) in [0, 1] (t = 0 data). Calling the model returns a
    :class:`Prediction`, readable as any kind::

        model = Model(net, paths.Linear(), predicts="velocity")
        x0_hat = model(x_t, t).x0
    """

    def __init__(self, net: Callable[..., Tensor], path: GaussianPath, predicts: str = "x0"):
        super().__init__()
        if not callable(net):
            raise TypeError(f"net must be callable net(x_t, t, **cond), got {type(net).__name__}")
        if not isinstance(path, GaussianPath):
            raise TypeError(f"path must be a GaussianPath, got {type(path).__name__}")
        self.net = net
        self.path = path
        self.predicts = check_kind(predicts, "predicts")

    def forward(self, x: Tensor, t: float | Tensor, **cond: Any) -> Prediction:
        t_batch = t if isinstance(t, Tensor) and t.ndim == 1 else None
        if t_batch is None:
            t_batch = torch.full((x.shape[0],), float(t), device=x.device, dtype=x.dtype)
        elif t_batch.shape[0] != x.shape[0]:
            raise ValueError(f"t has {t_batch.shape[0]} entries but x has batch {x.shape[0]}")
        value = self.net(x, t_batch, **cond)
        if value.shape != x.shape:
            raise ValueError(
                f"net returned shape {tuple(value.shape)} for input of shape {tuple(x.shape)}"
            )
        return Prediction(x, t, self.predicts, value, Coefficients.at(self.path, t, x))

    def predict(self, x: Tensor, t: float | Tensor, kind: str = "x0", **cond: Any) -> Tensor:
        """The model's prediction at (x, t) as ``kind``."""
        return self(x, t, **cond).get(kind)


class Preconditioned(nn.Module):
    """EDM preconditioning (Karras et al. 2022, Table 1) generalised to any Gaussian path.

    With the EDM noise level ``s = sigma / alpha`` and ``x~ = x_t / alpha`` (variance
    sigma_data^2 + s^2), the denoiser is ``D = c_skip x~ + c_out F(c_in x~, c_noise)`` with
    ``c_skip = sd^2 / (s^2 + sd^2)``, ``c_out = s sd / sqrt(s^2 + sd^2)``,
    ``c_in = 1 / sqrt(s^2 + sd^2)``, ``c_noise = log(s) / 4``. Written through (alpha, sigma) so it
    stays finite where alpha = 0. The wrapped module predicts ``x0``; ``F`` is called as
    ``F(c_in x~, c_noise, **cond)`` with c_noise of shape (B,).
    """

    def __init__(self, net: nn.Module, path: GaussianPath, sigma_data: float = 0.5):
        super().__init__()
        if sigma_data <= 0:
            raise ValueError(f"sigma_data must be > 0, got {sigma_data}")
        self.net, self.path, self.sigma_data = net, path, float(sigma_data)

    def forward(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        t = as_time(t, x).to(torch.float64)
        a, s = self.path.alpha(t), self.path.sigma(t)
        sd = self.sigma_data
        norm = torch.sqrt(s**2 + (a * sd) ** 2)
        c_in = expand_like((1.0 / norm).to(x.dtype), x)
        c_skip = expand_like((sd**2 * a / norm**2).to(x.dtype), x)
        c_out = expand_like((s * sd / norm).to(x.dtype), x)
        c_noise = (-self.path.logsnr(t) / 8.0).to(x.dtype)  # log(sigma / alpha) / 4
        return c_skip * x + c_out * self.net(c_in * x, c_noise, **cond)


def edm_loss_weight(path: GaussianPath, t: Tensor, sigma_data: float = 0.5) -> Tensor:
    """EDM's lambda(sigma) = (s^2 + sd^2) / (s sd)^2 for an x0 loss, s = sigma / alpha."""
    s = path.edm_sigma(t)
    return (s**2 + sigma_data**2) / (s * sigma_data) ** 2
