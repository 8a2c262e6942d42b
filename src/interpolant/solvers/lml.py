"""Levenberg-Marquardt-Langevin (LML; Wang, Yin et al., ICCV 2025, arXiv 2505.24222): a
Langevin corrector whose moves use a damped low-rank approximation of the diffusion Hessian.

Newton-Langevin would precondition the corrector by the inverse Hessian of -log p_t, which is
D x D. LML (i) approximates that Hessian by a rank-one outer product of the model's own
prediction and (ii) damps it Levenberg-Marquardt style. In noise units (eps = -sigma * score),

    H_eps = -sigma^2 grad^2 log p_t  ~=  g g^T,     g = kappa eps_prev + (1 - kappa) eps_hat,

the Gauss-Newton / Fisher form: by the Fisher identity E[eps_hat eps_hat^T] = E[H_eps] exactly
(for a Gaussian p_t, where H_eps is constant, E[g g^T] = H_eps). With damping lambda the
preconditioner, scaled so that it is the identity without curvature, is

    M = lambda (lambda I + g g^T)^{-1} = I - g g^T / (lambda + |g|^2)         (Sherman-Morrison)
    M^{1/2} = I - (1 - sqrt(lambda / (lambda + |g|^2))) g_hat g_hat^T,

applied per sample in O(D). Two modes:

* ``"preconditioned"`` (default; our reading of the method): the corrector moves
  ``x <- x + e M s + sqrt(2 e) M^{1/2} z``, the Langevin step that leaves p_t invariant for a
  fixed M. g is frozen within the level: it comes from the prediction at the start of the step
  (the predictor's, no extra evaluation), EMA-mixed with the previous level's by kappa.
* ``"released"``: the official code's ``lm_correct`` (``zituitui/LML-diffusion-sampler``,
  DPM-Solver and DDIM schedulers) applied to the corrector's drift: ``v = eps_hat``,
  ``v' = v - g (g . v) / (lambda + |g|^2)``, renormalised to |v| (``renormalize``), the noise
  untouched. With the released default kappa = 0, g = v and v' = v lambda / (lambda + |v|^2),
  which the renormalisation maps back to v: in exact arithmetic the released correction is the
  identity. In float32 the cancellation in ``v - v c`` (c ~ 1) leaves rounding noise that the
  renormalisation amplifies by |v|^2 / lambda; computing the correction in float64
  (``correction_dtype``, the default) removes it.
* ``"increment"``: the released code's placement (``dpm_solver_first_order_update`` with
  ``algorithm_type="dpmsolver"``, the CIFAR-10 and Stable Diffusion scripts' ``dpm_lm``): no
  extra evaluation; the predictor's move is split into the linear part and the increment,
  ``x' = (alpha'/alpha) x + v`` (for DDIM with eta = 0, ``v = -sigma' (e^h - 1) eps_hat``), and
  ``v`` is replaced by ``lm_correct(v)`` with ``g = kappa v_prev + (1 - kappa) v``, ``v_prev``
  the previous step's uncorrected increment, renormalised to |v|. Correctors, if any, are
  plain Langevin. At kappa = 0 this is the identity too; kappa > 0 is a real direction change.

Defaults follow the released code: lambda (``damping``) = 1e-3 (the README's value for
Stable Diffusion at 5-15 NFE; CIFAR-10 uses 8e-4..1e-3 at 5-15 NFE), kappa = 0.
``damping=math.inf`` switches the curvature off: M = I and LML is the ``pc`` sampler exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..configurable import boolean, number, one_of, option
from ..predictions import Prediction
from .base import History, Node, Run, State, register
from .sde import PredictorCorrector, langevin_move

LML_MODES = ("preconditioned", "released", "increment")


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-sample inner product, shaped to broadcast against a."""
    return (a * b).reshape(a.shape[0], -1).sum(1).reshape(-1, *([1] * (a.ndim - 1)))


def lm_direction(v: Tensor, g: Tensor, damping: float, renormalize: bool = False) -> Tensor:
    """``lambda (lambda I + g g^T)^{-1} v = v - g (g . v) / (lambda + |g|^2)`` per sample
    (Sherman-Morrison), optionally rescaled to the norm of v (the released ``lm_correct``)."""
    out = v - g * (_dot(g, v) / (damping + _dot(g, g)))
    if renormalize:
        out = out * (_dot(v, v).sqrt() / _dot(out, out).sqrt().clamp_min(1e-300))
    return out


def lm_sqrt_apply(z: Tensor, g: Tensor, damping: float) -> Tensor:
    """``M^{1/2} z`` for ``M = lambda (lambda I + g g^T)^{-1}``: the component of z along g is
    scaled by sqrt(lambda / (lambda + |g|^2)), the rest is kept."""
    g2 = _dot(g, g)
    shrink = 1.0 - torch.sqrt(damping / (damping + g2))
    return z - g * (shrink * _dot(g, z) / g2.clamp_min(1e-300))


@dataclass(frozen=True)
class LMLHistory(History):
    """The previous level's curvature vector (the EMA's other term): the noise prediction eps,
    or in ``"increment"`` mode the previous step's uncorrected increment."""

    per_sample: ClassVar[tuple[str, ...]] = ("eps",)
    eps: Tensor


@register
@dataclass(frozen=True)
class LML(PredictorCorrector):
    """Predictor-corrector sampling with Levenberg-Marquardt-Langevin correctors (module doc).

    Args (besides those of :class:`~interpolant.solvers.sde.PredictorCorrector`: predictor,
    predictor_options, n_corrector, snr, corrector):
        damping: lambda > 0 (``math.inf``: no curvature, plain Langevin).
        kappa: EMA weight of the previous prediction in g, in [0, 1).
        mode: "preconditioned", "released" or "increment" (module doc).
        renormalize: rescale the released direction to the norm of the plain one (released
            mode only; the official code always does).
        correction_dtype: dtype of the correction's arithmetic (float64 by default; None: the
            working dtype, as the released code in float32 pipelines).
    """

    name: ClassVar[str] = "lml"
    damping: float = option(
        1e-3,
        help="lambda > 0 (inf: no curvature, plain Langevin)",
        check=number(0, open_lo=True, allow_inf=True),
    )
    kappa: float = option(
        0.0, help="EMA weight of the previous prediction in g", check=number(0, 1, open_hi=True)
    )
    mode: str = option(
        "preconditioned", help="preconditioned, released or increment", check=one_of(*LML_MODES)
    )
    renormalize: bool = option(
        True, help="released mode: keep the plain direction's norm", check=boolean
    )
    correction_dtype: torch.dtype | None = option(
        torch.float64, help="dtype of the correction (None: the working dtype)"
    )

    def __post_init__(self) -> None:
        if isinstance(self.correction_dtype, str):
            object.__setattr__(self, "correction_dtype", getattr(torch, self.correction_dtype))
        super().__post_init__()

    def _mix(self, eps: Tensor, state: State) -> Tensor:
        """g = kappa eps_prev + (1 - kappa) eps (the released EMA; eps alone at the start)."""
        if self.kappa == 0.0 or not isinstance(state.history, LMLHistory):
            return eps
        return self.kappa * state.history.eps + (1.0 - self.kappa) * eps

    def _work(self, v: Tensor) -> Tensor:
        return v if self.correction_dtype is None else v.to(self.correction_dtype)

    def _step_increment(
        self, state: State, pred: Prediction, now: Node, nxt: Node, run: Run
    ) -> State:
        """The released placement: lm_correct on the predictor's increment (module doc)."""
        moved = self.predictor.step(state, pred, now, nxt, run)
        linear = (nxt.alpha / now.alpha) * state.x
        v = moved.x - linear
        g = self._work(self._mix(v, state))
        corrected = lm_direction(self._work(v), g, self.damping, self.renormalize).to(v.dtype)
        x = linear + corrected
        if not (run.is_last or nxt.sigma == 0.0):
            retention = (now.alpha / nxt.alpha) ** 2
            for _ in range(self.n_corrector):
                score = run.evaluate(x, nxt).score
                z = run.noise(x)
                x = langevin_move(x, self.corrector_step_size(score, z, nxt, retention), score, z)
        return moved.replace(x=x, history=LMLHistory(v))

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, run: Run) -> State:
        off = math.isinf(self.damping)
        if self.mode == "increment" and not off:
            return self._step_increment(state, pred, now, nxt, run)
        # Frozen curvature vector of this level (preconditioned mode), from the prediction at now.
        eps_now = -now.sigma * pred.score if not off else None
        moved = self.predictor.step(state, pred, now, nxt, run)
        if run.is_last or nxt.sigma == 0.0:
            return moved
        x, last = moved.x, state
        g_level = None if eps_now is None else self._work(self._mix(eps_now, state))
        retention = (now.alpha / nxt.alpha) ** 2
        for _ in range(self.n_corrector):
            score = run.evaluate(x, nxt).score
            z = run.noise(x)
            step_size = self.corrector_step_size(score, z, nxt, retention)
            if off:
                # No curvature: the plain Langevin corrector.
                x = langevin_move(x, step_size, score, z)
                continue
            if self.mode == "released":
                # Released lm_correct on the drift in noise units, g from the current eps_hat.
                eps = -nxt.sigma * score
                g = self._work(self._mix(eps, last))
                v = lm_direction(self._work(eps), g, self.damping, self.renormalize)
                drift = (-v / nxt.sigma).to(score.dtype)
                x = langevin_move(x, step_size, drift, z)
                last = last.replace(history=LMLHistory(eps))
            else:
                # Preconditioned Langevin move with M = lambda (lambda I + g g^T)^{-1}.
                assert g_level is not None
                drift = lm_direction(self._work(score), g_level, self.damping).to(score.dtype)
                noise = lm_sqrt_apply(self._work(z), g_level, self.damping).to(z.dtype)
                x = langevin_move(x, step_size, drift, noise)
        history = (
            last.history
            if self.mode == "released"
            else (LMLHistory(eps_now) if eps_now is not None else None)
        )
        return moved.replace(x=x, history=history)
