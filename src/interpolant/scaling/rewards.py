"""Rewards (verifiers) for inference-time scaling: analytic ones with exact tilted targets, the
shipped digit classifier, and any user callable.

Every reward follows :class:`~interpolant.scaling.base.Reward`: ``reward(x, **cond) -> (B,)``,
higher is better, evaluated without gradients by the search and steering methods. A reward can
score final samples or, through :func:`reward_on_x0`, the data prediction x0_hat of an
intermediate state (Tweedie's estimate; Ma et al. 2025 sec. 3, Singhal et al. 2025 sec. 3.2).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..data.oracles import ORACLES, GaussianMixture
from ..errors import UserError
from ..predictions import Prediction
from .base import Reward, check_rewards


def _vector(values: Any, name: str) -> Tensor:
    """A finite float64 vector from a sequence or tensor, or a clear error."""
    v = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    if v.numel() == 0 or not bool(torch.isfinite(v).all()):
        raise UserError(f"{name} must be a non-empty vector of finite numbers, got {values!r}")
    return v


def _flat(x: Tensor, dim: int, name: str) -> Tensor:
    """(B, ...) -> float64 (B, dim), refusing a sample size other than ``dim``."""
    flat = x.reshape(x.shape[0], -1).to(torch.float64)
    if flat.shape[1] != dim:
        raise UserError(f"{name} expects samples of {dim} numbers, got x of {tuple(x.shape)}")
    return flat


class LinearReward:
    """r(x) = a . x + b on the flattened sample. Its tilt of a Gaussian mixture is exact
    (:func:`interpolant.scaling.targets.tilt`)."""

    def __init__(self, a: Sequence[float] | Tensor, b: float = 0.0) -> None:
        self.a = _vector(a, "a")
        if not math.isfinite(float(b)):
            raise UserError(f"b must be finite, got {b}")
        self.b = float(b)

    def __call__(self, x: Tensor, **cond: Any) -> Tensor:
        return (_flat(x, self.a.numel(), "LinearReward") @ self.a.to(x.device) + self.b).to(
            x.dtype if x.is_floating_point() else torch.float64
        )

    def __repr__(self) -> str:
        return f"LinearReward(a={self.a.tolist()}, b={self.b})"


class QuadraticReward:
    """r(x) = -1/2 (x - c)^T Q (x - c) with Q symmetric positive semi-definite (default I):
    prefers samples near the center c."""

    def __init__(self, center: Sequence[float] | Tensor, Q: Tensor | Sequence[Any] | None = None):
        self.center = _vector(center, "center")
        d = self.center.numel()
        q = torch.eye(d, dtype=torch.float64) if Q is None else torch.as_tensor(Q).double()
        if q.ndim == 1:  # a diagonal
            q = torch.diag(q)
        if q.shape != (d, d) or not bool(torch.isfinite(q).all()):
            raise UserError(f"Q must be a finite ({d}, {d}) matrix or a diagonal of {d}")
        q = 0.5 * (q + q.T)
        if float(torch.linalg.eigvalsh(q).min()) < -1e-12 * max(1.0, float(q.abs().max())):
            raise UserError("Q must be positive semi-definite (the reward must be concave)")
        self.Q = q

    def __call__(self, x: Tensor, **cond: Any) -> Tensor:
        diff = _flat(x, self.center.numel(), "QuadraticReward") - self.center.to(x.device)
        out = -0.5 * torch.einsum("bi,ij,bj->b", diff, self.Q.to(x.device), diff)
        return out.to(x.dtype if x.is_floating_point() else torch.float64)

    def __repr__(self) -> str:
        return f"QuadraticReward(center={self.center.tolist()}, Q={self.Q.tolist()})"


class ComponentReward:
    """log P(component k | x) under a Gaussian mixture at t = 0: the exact "oracle classifier" of
    the "generate mode k" task (Ma et al. 2025's toy analogue of a class-logit verifier).
    ``posterior=False`` gives instead log(pi_k N(x; mu_k, C_k)), the component's joint density."""

    def __init__(self, mixture: GaussianMixture, component: int, posterior: bool = True) -> None:
        k = mixture.means.shape[0]
        if isinstance(component, bool) or not 0 <= int(component) < k:
            raise UserError(f"component must be an int in [0, {k}), got {component!r}")
        self.mixture, self.component, self.posterior = mixture, int(component), posterior

    def __call__(self, x: Tensor, **cond: Any) -> Tensor:
        flat = _flat(x, self.mixture.dim, "ComponentReward")
        single = GaussianMixture(
            self.mixture.means[self.component : self.component + 1],
            self.mixture.covs[self.component : self.component + 1],
        )
        joint = single.log_prob(flat) + torch.log(self.mixture.weights[self.component])
        out = joint - self.mixture.log_prob(flat) if self.posterior else joint
        return out.to(x.dtype if x.is_floating_point() else torch.float64)


class ClassifierReward:
    """log p(label | x) from the digit classifier shipped with the package
    (:mod:`interpolant.metrics.classifier`); x are digits in model space, (B, 64) or
    (B, 1, 8, 8) in [-1, 1]. ``label`` may be overridden per call with ``labels=`` (B,)."""

    def __init__(self, label: int, classifier: Any = None) -> None:
        if isinstance(label, bool) or not 0 <= int(label) < 10:
            raise UserError(f"label must be a digit class in [0, 10), got {label!r}")
        self.label, self.classifier = int(label), classifier

    def __call__(self, x: Tensor, labels: Tensor | None = None, **cond: Any) -> Tensor:
        from ..metrics.classifier import class_log_probs

        with torch.no_grad():
            logp = class_log_probs(x.cpu().float(), self.classifier)
        if labels is None:
            return logp[:, self.label].to(x.device)
        labels = torch.as_tensor(labels).long().reshape(-1, 1).cpu()
        return logp.gather(1, labels)[:, 0].to(x.device)


def reward_on_x0(reward: Reward, pred: Prediction, **cond: Any) -> Tensor:
    """The reward of the data prediction x0_hat(x_t) of ``pred`` (validated): the usual
    intermediate reward r(x0_hat(x_t)) of search and steering methods."""
    x0 = pred.x0
    return check_rewards(reward(x0, **cond), x0.shape[0], "reward(x0_hat)")


def load_reward(spec: str) -> Reward:
    """A user reward from ``"module:function"`` (any importable callable ``f(x, **cond) ->
    (B,)``; a class is instantiated without arguments)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UserError(f"a user reward must be given as 'module:function', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        kinds = ", ".join(spec.split(":")[0] for spec in REWARD_SPECS[:-1])
        raise UserError(
            f"unknown reward kind {module_name!r}: the built-in kinds are {kinds} "
            f"({'; '.join(REWARD_SPECS[:-1])}); anything else is read as module:function of "
            f"your own, and importing {module_name!r} failed ({err})"
        ) from err
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UserError(f"module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if isinstance(obj, type):
        obj = obj()
    if not callable(obj):
        raise UserError(f"{spec!r} is not callable (got {type(obj).__name__})")
    reward: Reward = obj
    return reward


def _numbers(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise UserError(f"{what} must be comma-separated numbers, got {text!r}") from err


def _options(body: str, spec: str) -> tuple[str, dict[str, str]]:
    """'1,2;b=0.5' -> ('1,2', {'b': '0.5'})."""
    head, *rest = body.split(";")
    opts = {}
    for item in rest:
        key, eq, value = item.partition("=")
        if not eq:
            raise UserError(f"reward option {item!r} in {spec!r} must read key=value")
        opts[key.strip()] = value
    return head, opts


REWARD_SPECS = (
    "linear:A1,A2,...[;b=B]",
    "quadratic:C1,C2,...[;q=S or q=D1,D2,...]",
    "classifier:LABEL",
    "component:ORACLE:K",
    "module:function",
)


def reward_from_spec(spec: str) -> Reward:
    """A reward from a command-line string (``interpolant sample --reward SPEC``):

    * ``linear:1,0;b=0.5`` -> ``LinearReward(a=(1, 0), b=0.5)``
    * ``quadratic:2,0`` (Q = I), ``quadratic:2,0;q=4`` (Q = 4 I), ``quadratic:2,0;q=1,9``
      (Q = diag(1, 9)) -> :class:`QuadraticReward`
    * ``classifier:3`` -> ``ClassifierReward(3)`` (the shipped digit classifier)
    * ``component:ring2d:0`` -> ``ComponentReward(ring2d(), 0)``
    * anything else ``module:function`` -> :func:`load_reward`.
    """
    if not isinstance(spec, str) or ":" not in spec:
        raise UserError(f"reward spec must be one of {REWARD_SPECS}, got {spec!r}")
    kind, _, body = spec.partition(":")
    if kind == "linear":
        head, opts = _options(body, spec)
        unknown = set(opts) - {"b"}
        if unknown:
            raise UserError(f"unknown option(s) {sorted(unknown)} in {spec!r}; linear takes b=")
        return LinearReward(_numbers(head, "linear weights"), float(opts.get("b", 0.0)))
    if kind == "quadratic":
        head, opts = _options(body, spec)
        unknown = set(opts) - {"q"}
        if unknown:
            raise UserError(f"unknown option(s) {sorted(unknown)} in {spec!r}; quadratic takes q=")
        center = _numbers(head, "quadratic center")
        q = _numbers(opts["q"], "q") if "q" in opts else [1.0]
        diag = q * len(center) if len(q) == 1 else q
        return QuadraticReward(center, torch.tensor(diag, dtype=torch.float64))
    if kind == "classifier":
        try:
            return ClassifierReward(int(body))
        except ValueError as err:
            raise UserError(f"classifier reward needs a digit label, got {spec!r}") from err
    if kind == "component":
        name, _, k = body.partition(":")
        if name not in ORACLES or not k.isdigit():
            raise UserError(
                f"component reward reads component:ORACLE:K with ORACLE in "
                f"{sorted(ORACLES)}, got {spec!r}"
            )
        mixture = ORACLES[name]()
        return ComponentReward(mixture, int(k))
    return load_reward(spec)
