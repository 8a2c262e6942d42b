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
from typing import Any

import torch
from torch import Tensor, nn

from .errors import UserError, WrongTypeError
from .paths import GaussianPath, as_time, expand_like
from .paths.nodes import Coefficients, Node

KINDS = ("x0", "eps", "velocity", "score", "v")


def check_kind(kind: str, argument: str = "kind") -> str:
    """Validate a prediction kind name."""
    if kind not in KINDS:
        raise UserError(f"{argument} must be one of {KINDS}, got {kind!r}")
    return kind


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
    raise UserError(f"unknown prediction kind {kind!r}; choose one of {KINDS}")


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
    raise UserError(f"unknown prediction kind {kind!r}; choose one of {KINDS}")


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
    raise UserError(f"unknown prediction kind {kind!r}; choose one of {KINDS}")


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


class GuidedPrediction(Prediction):
    """A guided prediction that keeps the ``reference`` prediction it was guided from at the
    same (x_t, t) (the unconditional one for CFG): what CFG-guidance hooks return, so that a
    solver can read both (the CFG++ samplers renoise with the reference's eps). Any change
    (``replace``) makes a plain :class:`Prediction` again."""

    __slots__ = ("reference",)

    def __init__(
        self,
        x: Tensor,
        t: float | Tensor,
        kind: str,
        value: Tensor,
        coeffs: Coefficients,
        reference: Prediction,
    ) -> None:
        super().__init__(x, t, kind, value, coeffs)
        self.reference = reference

    @classmethod
    def of(cls, guided: Prediction, reference: Prediction) -> GuidedPrediction:
        """``guided`` (its computed kinds kept) carrying ``reference``."""
        out = cls(guided.x, guided.t, guided.kind, guided.value, guided.coeffs, reference)
        out._cache = dict(guided._cache)
        return out


def net_dtype(net: Any, like: Tensor) -> torch.dtype:
    """The dtype a network computes in: its first floating parameter's, else ``like``'s (a
    parameter-free network such as an exact oracle)."""
    if isinstance(net, nn.Module):
        for p in net.parameters():
            if p.is_floating_point():
                return p.dtype
    return like.dtype


class Evaluations:
    """Counts model evaluations (NFE) and holds the conditioning of one run.

    Every network call at a node goes through :meth:`Model.at`, which adds one to ``nfe``: the
    sampling loop, guidance, inverse-problem solvers and steering count the same way.
    """

    def __init__(self, cond: dict[str, Any] | None = None) -> None:
        self.nfe = 0
        self.cond: dict[str, Any] = dict(cond or {})


class Model(nn.Module):
    """Any callable ``net(x_t, t, **cond)`` that predicts ``predicts`` on ``path``.

    ``net`` receives t of shape (B,) in [0, 1] (t = 0 data). Calling the model returns a
    :class:`Prediction`, readable as any kind::

        model = Model(net, paths.Linear(), predicts="velocity")
        x0_hat = model(x_t, t).x0

    :meth:`at` is the evaluation the samplers use: at a grid node, counted.
    """

    def __init__(self, net: Callable[..., Tensor], path: GaussianPath, predicts: str = "x0"):
        super().__init__()
        if not callable(net):
            raise WrongTypeError(
                f"net must be callable net(x_t, t, **cond), got {type(net).__name__}"
            )
        if not isinstance(path, GaussianPath):
            raise WrongTypeError(f"path must be a GaussianPath, got {type(path).__name__}")
        self.net = net
        self.path = path
        self.predicts = check_kind(predicts, "predicts")

    def input_dtype(self, like: Tensor) -> torch.dtype:
        """The dtype the network computes in (:func:`net_dtype`)."""
        return net_dtype(self.net, like)

    def call_net(
        self, x: Tensor, t: Tensor, cond: dict[str, Any], dtype: torch.dtype | None = None
    ) -> Tensor:
        """The one place the network is called: x cast to ``dtype`` (default: x's), the output
        checked to have x's shape and returned in x's dtype."""
        dtype = x.dtype if dtype is None else dtype
        # Casts only where the dtypes differ (a no-op .to still costs a dispatch per step).
        value = self.net(x if x.dtype == dtype else x.to(dtype), t, **cond)
        if not isinstance(value, Tensor) or value.shape != x.shape:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise UserError(
                f"the network returned {shape} for x of shape {tuple(x.shape)}; it must "
                f"return a {self.predicts} prediction of the same shape as x"
            )
        return value if value.dtype == x.dtype else value.to(x.dtype)

    def at(
        self,
        x: Tensor,
        node: Node,
        counter: Evaluations,
        cond: dict[str, Any] | None = None,
        dtype: torch.dtype | None = None,
        evaluations: int = 1,
    ) -> Prediction:
        """The prediction at (x, node), counted as ``evaluations`` model evaluations per sample
        on ``counter`` (one; a forward over k stacked copies of the batch, as batched CFG's
        cat([x, x]), is k).

        ``cond`` defaults to the run's conditioning; ``dtype`` is the network's input dtype
        (default :meth:`input_dtype`). The value comes back in x's dtype. Differentiable in x
        when grad mode is on.
        """
        counter.nfe += evaluations
        if dtype is None:
            dtype = self.input_dtype(x)
        t = torch.full((x.shape[0],), node.t, device=x.device, dtype=dtype)
        value = self.call_net(x, t, counter.cond if cond is None else cond, dtype)
        return Prediction(x, node.t, self.predicts, value, node.coeffs)

    def forward(self, x: Tensor, t: float | Tensor, **cond: Any) -> Prediction:
        t_batch = t if isinstance(t, Tensor) and t.ndim == 1 else None
        if t_batch is None:
            t_batch = torch.full((x.shape[0],), float(t), device=x.device, dtype=x.dtype)
        elif t_batch.shape[0] != x.shape[0]:
            raise UserError(f"t has {t_batch.shape[0]} entries but x has batch {x.shape[0]}")
        value = self.call_net(x, t_batch, cond)
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
            raise UserError(f"sigma_data must be > 0, got {sigma_data}")
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
