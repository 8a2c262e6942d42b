"""Adaptive Dormand-Prince 5(4) and the reference probability-flow ODE sampler.

``odeint_dopri5`` is the embedded Runge-Kutta pair of Dormand & Prince (1980) with the error
control of Hairer, Norsett & Wanner, "Solving ODEs I", sec. II.4 (initial step by their
algorithm, PI step-size control). It works on a batch with one shared step size: the error
norm is the RMS over each sample's entries, maximised over samples, so every sample meets the
tolerance. It is the ground truth that fixed-step solvers are measured against.

``reference_sample`` integrates the probability-flow ODE of any Gaussian path in the angle
variable below, where it is neither singular at t = 0 (VP paths have sigma' = inf there) nor at
alpha = 0, and is not stiff for data of tiny variance.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal, overload

import torch
from torch import Tensor

from ..errors import UserError, WrongTypeError
from ..paths import GaussianPath
from ..paths.nodes import node_at
from ..predictions import Evaluations, Model

ODEFunc = Callable[[Tensor, float], Tensor]

# Dormand-Prince 5(4) tableau (Hairer, Norsett & Wanner, Table II.5.2).
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
# 5th-order weights are the last row of A (FSAL); E = b5 - b4 gives the embedded error.
_E = (
    71 / 57600,
    0.0,
    -71 / 16695,
    71 / 1920,
    -17253 / 339200,
    22 / 525,
    -1 / 40,
)


def dopri5_step(
    f: ODEFunc, x: Tensor, t: float, h: float, k1: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """One Dormand-Prince step of size h (h < 0 integrates backwards) from (x, t), f(x, t) = k1.

    Returns (x_new, error estimate x5 - x4, f(x_new, t + h)); the last is the next step's k1
    (first same as last), so a step costs 6 evaluations.
    """
    k = [k1]
    for i in range(1, 7):
        dx = sum((a * kj for a, kj in zip(_A[i], k) if a != 0.0), torch.zeros_like(x))
        x_i = x + h * dx
        k.append(f(x_i, t + _C[i] * h))
    x_new = x_i  # stage 7 is evaluated at the 5th-order solution
    err = h * sum((e * kj for e, kj in zip(_E, k) if e != 0.0), torch.zeros_like(x))
    return x_new, err, k[6]


def _error_norm(err: Tensor, x: Tensor, x_new: Tensor, rtol: float, atol: float) -> float:
    """max over samples of the RMS of err / (atol + rtol max(|x|, |x_new|))."""
    scale = atol + rtol * torch.maximum(x.abs(), x_new.abs())
    per_sample = (err / scale).reshape(err.shape[0], -1).square().mean(dim=1).sqrt()
    return float(per_sample.max())


def _rms(x: Tensor, scale: Tensor) -> float:
    return float((x / scale).square().mean().sqrt())


def odeint_dopri5(
    f: ODEFunc,
    x: Tensor,
    t0: float,
    t1: float,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    h0: float | None = None,
    max_steps: int = 100_000,
) -> tuple[Tensor, int]:
    """Integrate dx/dt = f(x, t) from t0 to t1 (either direction) with Dormand-Prince 5(4).

    Args:
        f: the vector field, called as ``f(x, t)`` with t a Python float.
        x: the state at t0, of shape (B, ...); it is integrated in float64.
        rtol, atol: a step is accepted when, for every sample, the RMS of the error estimate
            divided by ``atol + rtol max(|x|, |x_new|)`` is at most 1.
        h0: the first step size (default: chosen automatically).
        max_steps: raise a RuntimeError beyond this many steps (accepted and rejected).

    Returns:
        (x at t1 in float64, the number of evaluations of f).
    """
    if not (rtol > 0 and atol > 0):
        raise UserError(f"rtol and atol must be > 0, got rtol={rtol}, atol={atol}")

    def f64(y: Tensor, t: float) -> Tensor:
        return f(y, t).to(torch.float64)

    x = x.to(torch.float64)
    direction, span = (1.0 if t1 >= t0 else -1.0), abs(t1 - t0)
    if span == 0:
        return x, 0
    k1, nfe = f64(x, t0), 1
    if h0 is None:
        # Starting step (HNW II.4): from the sizes of x, f and the change of f over an Euler step.
        scale = atol + rtol * x.abs()
        d0, d1 = _rms(x, scale), _rms(k1, scale)
        h = min(1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1, span)
        d2 = _rms(f64(x + direction * h * k1, t0 + direction * h) - k1, scale) / h
        nfe += 1
        big = max(d1, d2)
        h = min(100 * h, max(1e-6, h * 1e-3) if big <= 1e-15 else (0.01 / big) ** (1 / 5), span)
    else:
        h = min(abs(h0), span)
    t, err_prev, steps = t0, 1e-4, 0
    safety, min_factor, max_factor = 0.9, 0.2, 10.0
    while direction * (t1 - t) > 0:
        steps += 1
        if steps > max_steps:
            raise RuntimeError(f"odeint_dopri5: more than max_steps={max_steps} steps at t={t}")
        last = h >= abs(t1 - t) * (1 - 1e-12)
        step = (t1 - t) if last else direction * h
        x_new, err, k_new = dopri5_step(f64, x, t, step, k1)
        nfe += 6
        err_norm = _error_norm(err, x, x_new, rtol, atol)
        if not math.isfinite(err_norm):
            h = abs(step) * min_factor
        elif err_norm <= 1.0:
            # Accept; PI control (HNW II.4, beta = 0.04): h *= err^-(1/5 - 0.75 beta) err_prev^beta.
            t = t1 if last else t + step
            x, k1 = x_new, k_new
            factor = safety * max(err_norm, 1e-10) ** -0.17 * err_prev**0.04
            h = abs(step) * min(max_factor, max(min_factor, factor))
            err_prev = max(err_norm, 1e-4)
        else:
            # Reject; shrink with the plain controller.
            h = abs(step) * min(1.0, max(min_factor, safety * err_norm ** (-1 / 5)))
    return x, nfe


def odeint_rk4(f: ODEFunc, x: Tensor, t0: float, t1: float, steps: int) -> tuple[Tensor, int]:
    """Classical fixed-step Runge-Kutta 4 from t0 to t1 in float64; returns (x, nfe)."""
    if steps < 1:
        raise UserError(f"steps must be >= 1, got {steps}")
    x = x.to(torch.float64)
    h = (t1 - t0) / steps
    for i in range(steps):
        t = t0 + i * h
        k1 = f(x, t)
        k2 = f(x + 0.5 * h * k1, t + 0.5 * h)
        k3 = f(x + 0.5 * h * k2, t + 0.5 * h)
        k4 = f(x + h * k3, t + h)
        x = x + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
    return x, 4 * steps


class PIDController:
    """PID step-size control (Soderlind 2003, "Digital filters in adaptive time-stepping"; the
    controller of k-diffusion's ``dpm_adaptive``): with e_n = 1 / (error_n + eps) for the
    newest three accepted errors (the error normalised so that 1 is the tolerance),

        factor = limiter(e_n^b1 e_{n-1}^b2 e_{n-2}^b3),   limiter(x) = 1 + atan(x - 1),
        b1 = (p + i + d) / k,  b2 = -(p + 2 d) / k,  b3 = d / k     (k the order)

    and h <- factor h; a step is accepted when factor >= ``accept_safety``. p = d = 0, i = 1
    is the classical controller h <- h error^(-1/k) (with the limiter). One controller serves
    one integration (it keeps h and the error history: make a new one per integration).
    """

    def __init__(
        self,
        h: float,
        pcoeff: float,
        icoeff: float,
        dcoeff: float,
        order: float,
        accept_safety: float = 0.81,
        eps: float = 1e-8,
    ) -> None:
        self.h = h
        self.b1 = (pcoeff + icoeff + dcoeff) / order
        self.b2 = -(pcoeff + 2 * dcoeff) / order
        self.b3 = dcoeff / order
        self.accept_safety, self.eps = accept_safety, eps
        self.errors: list[float] = []

    def propose(self, error: float) -> bool:
        """Update h from the normalised ``error`` of the step just tried; True to accept it."""
        inv = 1.0 / (float(error) + self.eps)
        if not self.errors:
            self.errors = [inv, inv, inv]
        self.errors[0] = inv
        e = self.errors
        factor = 1.0 + math.atan(e[0] ** self.b1 * e[1] ** self.b2 * e[2] ** self.b3 - 1.0)
        accept = factor >= self.accept_safety
        if accept:
            self.errors = [e[0], e[0], e[1]]
        self.h *= factor
        return accept


# The angle variable ------------------------------------------------------------------------
#
# Every Gaussian path is the trigonometric path in disguise: with r = sqrt(alpha^2 + sigma^2) and
# theta = atan2(sigma, alpha), x_t = r (cos(theta) x0 + sin(theta) eps). For y = x / r the
# probability-flow ODE dx/dt = alpha' x0_hat + sigma' eps_hat becomes
#
#     dy / dtheta = -sin(theta) x0_hat + cos(theta) eps_hat,       theta in [0, pi/2],
#
# which is smooth at theta = 0 (where a VP path's sigma' is infinite) and at alpha = 0, and has
# Lipschitz constant ~ 1 / std for data of tiny std (not ~ sigma' / std in t).

#: The field is evaluated at theta >= this: at sigma = 0 exactly, eps = (x - alpha x0) / sigma
#: is 0/0. Freezing it on [0, THETA_FLOOR] moves the result by at most L THETA_FLOOR^2 / 2
#: (L the Lipschitz constant of eps_hat in theta, ~ 1 / data std): ~1e-16 / std.
THETA_FLOOR = 1e-8


def theta_of_t(path: GaussianPath, t: float) -> float:
    """The angle atan2(sigma(t), alpha(t)) of a Gaussian path."""
    tt = torch.tensor(t, dtype=torch.float64)
    return math.atan2(float(path.sigma(tt)), float(path.alpha(tt)))


def angle_field(
    model: Model,
    t_max: float,
    cond: dict[str, Any] | None = None,
    model_dtype: torch.dtype | None = None,
) -> tuple[Callable[[Tensor, float], Tensor], float, Callable[[float], float]]:
    """The probability-flow field of ``model`` in (y, theta): returns (field(y, theta),
    theta_max, r_of_theta) with ``y = x / r`` and ``theta`` from 0 (data) to theta(t_max).

    The model sees x = r(t) y at t = t(theta) (from the path's ``t_of_logsnr``), in
    ``model_dtype``; the field is computed in float64 and is differentiable in y.
    """
    path, counter = model.path, Evaluations(cond)
    theta_max = theta_of_t(path, t_max)

    def t_of_theta(theta: float) -> float:
        if theta >= theta_max:
            return t_max
        logsnr = -2.0 * math.log(math.tan(max(theta, THETA_FLOOR)))
        return min(float(path.t_of_logsnr(torch.tensor(logsnr, dtype=torch.float64))), t_max)

    def r_of_theta(theta: float) -> float:
        tt = torch.tensor(t_of_theta(theta), dtype=torch.float64)
        return math.hypot(float(path.alpha(tt)), float(path.sigma(tt)))

    def field(y: Tensor, theta: float) -> Tensor:
        node = node_at(path, t_of_theta(theta))
        r = math.hypot(node.alpha, node.sigma)
        # Use the angle of the time actually evaluated, so the field is the exact one there.
        th = math.atan2(node.sigma, node.alpha)
        pred = model.at((r * y).to(torch.float64), node, counter, dtype=model_dtype or y.dtype)
        return -math.sin(th) * pred.x0 + math.cos(th) * pred.eps

    return field, theta_max, r_of_theta


@overload
def reference_sample(
    model: Model,
    noise: Tensor,
    t_max: float = ...,
    rtol: float = ...,
    atol: float = ...,
    cond: dict[str, Any] | None = ...,
    return_nfe: Literal[False] = ...,
) -> Tensor: ...


@overload
def reference_sample(
    model: Model,
    noise: Tensor,
    t_max: float = ...,
    rtol: float = ...,
    atol: float = ...,
    cond: dict[str, Any] | None = ...,
    *,
    return_nfe: Literal[True],
) -> tuple[Tensor, int]: ...


def reference_sample(
    model: Model,
    noise: Tensor,
    t_max: float = 1.0,
    rtol: float = 1e-10,
    atol: float = 1e-10,
    cond: dict[str, Any] | None = None,
    return_nfe: bool = False,
) -> Tensor | tuple[Tensor, int]:
    """The exact (to rtol) probability-flow ODE sample of ``model`` from ``noise``.

    Starts, like :func:`solvers.sample`, at x = sigma(t_max) noise and integrates to t = 0 with
    :func:`odeint_dopri5` in the angle variable (see above), in float64. The model is called in
    ``noise``'s dtype. Returns the sample (float64), and the NFE if ``return_nfe``.
    """
    if not isinstance(model, Model):
        raise WrongTypeError(f"model must be an interpolant.Model, got {type(model).__name__}")
    if not 0 < t_max <= 1:
        raise UserError(f"t_max must lie in (0, 1], got {t_max}")
    field, theta_max, r_of_theta = angle_field(model, t_max, cond, noise.dtype)
    sigma_max = float(model.path.sigma(torch.tensor(t_max, dtype=torch.float64)))
    y = noise.to(torch.float64) * (sigma_max / r_of_theta(theta_max))
    y0, nfe = odeint_dopri5(field, y, theta_max, 0.0, rtol=rtol, atol=atol)
    x0 = y0 * float(model.path.alpha(torch.tensor(0.0, dtype=torch.float64)))  # r(0) = alpha(0)
    return (x0, nfe) if return_nfe else x0
