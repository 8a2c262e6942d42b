"""Classifier-free guidance and autoguidance: extrapolate from a reference prediction.

With D the (conditional) model's prediction and R a reference prediction at the same (x_t, t),

    D_w = R + w (D - R) = lerp(R, D, w)

(Ho & Salimans 2022, eq. 6, written for the denoiser as in Karras et al. 2024, eq. 1). For CFG
the reference is the same network without the condition (a null label); for autoguidance
(Karras et al. 2024, "Guiding a diffusion model with a bad version of itself") it is a weaker
model (smaller, or trained for less) with the same condition. w = 1 is the model itself, w = 0
the reference.

Every prediction kind is affine in the prediction with the same x_t offset (x0 = (x - sigma
eps) / alpha, v = alpha eps - sigma x0, ...), and the lerp weights sum to one, so the lerp in any
kind equals the lerp in x0 (or eps): the hook combines in the model's own kind, which stays
finite wherever the model's output is.

Batched CFG (``CFG(w, null_cond=..., batched=True)``) runs both halves in one network call over
``cat([x, x])`` with ``cat([cond, null_cond])``: before the run, the hook swaps in a model whose
evaluation returns the conditional prediction carrying the null one it computed in the same
call (counted as two evaluations). The pair travels with the prediction, so nothing is kept on
the hook between the model call and the hook.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..errors import UserError, WrongTypeError
from ..paths.nodes import Coefficients, Node
from ..predictions import Evaluations, GuidedPrediction, Model, Prediction, check_kind
from ..solvers.base import Run
from ..solvers.hooks import Hook, Plan
from .base import GuidanceScale, as_scale


class ReferenceGuidance(Hook[Any]):
    """Prediction hook ``D_w = lerp(R, D, w(t))`` with R from a reference model.

    Args:
        scale: the guidance weight w (or a :class:`GuidanceScale`); 1 means no guidance.
        reference: the reference :class:`Model` (autoguidance), on the same path as the sampled
            model. ``None`` uses the sampled model itself with ``null_cond`` (CFG).
        null_cond: conditioning entries replaced for the reference call, e.g.
            ``{"class_labels": None}`` (the null class of ``models.LabelEmbedding``) or
            ``{"class_labels": 10}`` (an explicit null index, broadcast to the batch).
        schedule: "constant", "linear", "cosine" (mean-preserving shapes of the excess w - 1
            over t, see ``guidance.base.SCHEDULES``) or a callable ``t -> w``.
        interval: (t_lo, t_hi); outside it w = 1 and the reference is not called.
        batched: run the conditional and the null halves in one network call over
            ``cat([x, x])`` (CFG with explicit null labels only; same result, same NFE).

    Each reference evaluation adds one to the run's NFE (``Model.at``), so budgets compare
    fairly with unguided sampling; the batched call counts two.
    """

    def __init__(
        self,
        scale: float | GuidanceScale,
        reference: Model | None = None,
        *,
        null_cond: dict[str, Any] | None = None,
        schedule: str | Callable[[float], float] = "constant",
        interval: tuple[float, float] = (0.0, 1.0),
        batched: bool = False,
    ) -> None:
        if reference is not None and not isinstance(reference, Model):
            raise WrongTypeError(f"reference must be a Model, got {type(reference).__name__}")
        if reference is None and not null_cond:
            raise UserError(
                "CFG needs null_cond (e.g. {'class_labels': None}) to make the unconditional "
                "prediction; autoguidance needs reference=Model(...)"
            )
        if batched and reference is not None:
            raise UserError(
                "batched=True needs CFG with a null label; autoguidance's reference is another "
                "network, so it needs two calls"
            )
        if batched and any(v is None for v in (null_cond or {}).values()):
            raise UserError(
                "batched=True needs explicit null labels, e.g. {'class_labels': 10}, "
                f"not None; got null_cond={null_cond}"
            )
        self.weight = as_scale(scale, schedule, interval, off=1.0)
        self.reference = reference
        self.null_cond = dict(null_cond or {})
        self.batched = bool(batched)

    def prepare(self, plan: Plan) -> Plan:
        """With ``batched``, the run's model becomes the one that evaluates both halves."""
        if not self.batched:
            return plan
        if isinstance(plan.model, _NullPaired):
            raise UserError("only one batched CFG hook can run at a time")
        return Plan(_NullPaired(plan.model, self), plan.grid, plan.x)

    def start(self, run: Run) -> Any:
        """Check once per run that the reference model shares the sampled model's path (no
        per-run state: None; APG keeps its momentum)."""
        if self.reference is not None and self.reference.path.config() != run.path.config():
            raise UserError(
                f"reference is on path {self.reference.path!r} but the sampled model is on "
                f"{run.path!r}; guidance combines predictions on one path"
            )

    def on_prediction(self, pred: Prediction, node: Node, run: Run, state: Any) -> Prediction:
        w = self.weight(node.t)
        if w == 1.0 and not self.acts_at_unit_weight:
            return pred
        ref = self.reference_prediction(pred, node, run)
        # The guided prediction keeps its reference: CFG++ samplers renoise with it.
        return GuidedPrediction.of(self.combine(pred, ref, w, run, state), ref)

    #: Whether :meth:`combine` changes the prediction at w = 1 (CFG-Zero*'s zero-init does).
    acts_at_unit_weight = False
    #: The guided predictions carry the reference (GuidedPrediction; the CFG++ solvers read it).
    provides_reference = True

    def combine(
        self, pred: Prediction, ref: Prediction, w: float, run: Run, state: Any
    ) -> Prediction:
        """The guided prediction from the model's ``pred`` and the reference ``ref`` at weight
        w: here ``lerp(R, D, w)`` in the model's own kind (eq. 1 of Karras et al. 2024); the
        variants below (CFGRescale, APG, CFGZeroStar) override it."""
        kind = pred.kind
        return pred.replace(kind, torch.lerp(ref.get(kind), pred.get(kind), w))

    def reference_prediction(self, pred: Prediction, node: Node, run: Run) -> Prediction:
        """R at (x_t, t): the null half of the batched call when ``pred`` carries it, else one
        counted evaluation of the reference (the sampled model with the null conditioning for
        CFG)."""
        if isinstance(pred, _Paired) and pred.guidance is self:
            return pred.reference
        if self.reference is not None:
            return self.reference.at(pred.x, node, run)
        cond = self.null_conditioning(run.cond, pred.x.shape[0], pred.x.device)
        return run.model.at(pred.x, node, run, cond=cond)

    def null_conditioning(
        self, cond: dict[str, Any], batch: int, device: torch.device
    ) -> dict[str, Any]:
        """``cond`` with the null entries: None stays None, a number becomes a (batch,) tensor
        (of the conditional entry's dtype when there is one)."""
        out = dict(cond)
        for key, null in self.null_cond.items():
            if null is None or isinstance(null, Tensor):
                out[key] = null
                continue
            like = cond.get(key)
            if isinstance(like, Tensor):
                out[key] = torch.full_like(like, null)
            else:
                dtype = torch.long if isinstance(null, int) else torch.get_default_dtype()
                out[key] = torch.full((batch,), null, dtype=dtype, device=device)
        return out

    def __repr__(self) -> str:
        ref = "cfg" if self.reference is None else "autoguidance"
        batched = ", batched" if self.batched else ""
        return f"{type(self).__name__}({ref}, {self.weight!r}{batched})"


class _Paired(Prediction):
    """The conditional prediction of a batched CFG call, with the null prediction (``reference``)
    the same call computed, for the hook ``guidance`` that asked for it. Any change to the
    prediction (``replace``) makes a plain :class:`Prediction` again, and the hook then
    evaluates the reference itself."""

    __slots__ = ("guidance", "reference")

    def __init__(
        self,
        x: Tensor,
        t: float,
        kind: str,
        value: Tensor,
        coeffs: Coefficients,
        reference: Prediction,
        guidance: ReferenceGuidance,
    ) -> None:
        super().__init__(x, t, kind, value, coeffs)
        self.reference, self.guidance = reference, guidance


class _NullPaired(Model):
    """``model`` whose evaluation with the run's conditioning, at a node where ``guidance``
    guides, is one network call over ``cat([x, x])`` with ``cat([cond, null_cond])`` counted as
    two evaluations; an evaluation with an explicit ``cond`` is a plain one."""

    def __init__(self, model: Model, guidance: ReferenceGuidance) -> None:
        super().__init__(model.net, model.path, model.predicts)
        self.guidance = guidance

    def at(
        self,
        x: Tensor,
        node: Node,
        counter: Evaluations,
        cond: dict[str, Any] | None = None,
        dtype: torch.dtype | None = None,
        evaluations: int = 1,
    ) -> Prediction:
        if cond is not None or self.guidance.weight(node.t) == 1.0:
            return super().at(x, node, counter, cond, dtype, evaluations)
        cond = counter.cond
        null = self.guidance.null_conditioning(cond, x.shape[0], x.device)
        both = {key: _cat(cond.get(key), null[key], key) for key in null}
        # One forward over two copies of the batch: two NFE per sample.
        pair = super().at(torch.cat([x, x]), node, counter, both, dtype, evaluations=2)
        value, null_value = pair.value.chunk(2)
        reference = Prediction(x, node.t, self.predicts, null_value, node.coeffs)
        return _Paired(x, node.t, self.predicts, value, node.coeffs, reference, self.guidance)


def _cat(a: Any, b: Any, key: str) -> Any:
    """Concatenate a conditional entry with its null counterpart along the batch."""
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return torch.cat([a, b.to(a.dtype)])
    if a is None and b is None:
        return None
    if not isinstance(a, Tensor) and not isinstance(b, Tensor) and a == b:
        return a
    raise UserError(f"cannot batch cond[{key!r}]: need tensors in both halves, got {a!r} and {b!r}")


class CFG(ReferenceGuidance):
    """Classifier-free guidance: the reference is the same network with ``null_cond``
    (default ``{"class_labels": None}``, the null class of ``models.LabelEmbedding``);
    ``batched=True`` (explicit null labels) evaluates both halves in one network call."""

    def __init__(
        self,
        scale: float | GuidanceScale,
        *,
        null_cond: dict[str, Any] | None = None,
        schedule: str | Callable[[float], float] = "constant",
        interval: tuple[float, float] = (0.0, 1.0),
        batched: bool = False,
    ) -> None:
        null = {"class_labels": None} if null_cond is None else null_cond
        super().__init__(
            scale, None, null_cond=null, schedule=schedule, interval=interval, batched=batched
        )


class AutoGuidance(ReferenceGuidance):
    """Autoguidance (Karras et al. 2024): the reference is a weaker ``reference`` model with
    the same conditioning."""

    def __init__(
        self,
        reference: Model,
        scale: float | GuidanceScale,
        *,
        schedule: str | Callable[[float], float] = "constant",
        interval: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        if not isinstance(reference, Model):
            raise WrongTypeError(f"reference must be a Model, got {type(reference).__name__}")
        super().__init__(scale, reference, schedule=schedule, interval=interval)


# ----------------------------------------------------------------------------------------------
# CFG variants: the same two evaluations per step, another combination of D and R.


def _per_sample(fn: Callable[[Tensor], Tensor], v: Tensor) -> Tensor:
    """``fn`` over the non-batch dims of v, shaped to broadcast against v."""
    return fn(v.reshape(v.shape[0], -1)).reshape(-1, *([1] * (v.ndim - 1)))


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return _per_sample(lambda m: m.sum(dim=1), a * b)


class CFGRescale(CFG):
    """CFG with the guided prediction's per-sample std rescaled towards the conditional one's
    (Lin et al. 2023, "Common diffusion noise schedules and sample steps are flawed", Alg. 2;
    diffusers' ``guidance_rescale``, ComfyUI's RescaleCFG):

        g = R + w (D - R),   g_rescaled = g std(D) / std(g),   out = phi g_rescaled + (1 - phi) g

    with std over each sample's entries (unbiased, as ``torch.std``). The std is not the same
    in every prediction kind, so the kind matters: ``kind=None`` (default) uses the model's
    own output, as diffusers does; Lin et al. use v-prediction models (``kind="v"``).
    phi = 0 is plain CFG; the paper recommends phi = 0.7.
    """

    def __init__(
        self,
        scale: float | GuidanceScale,
        phi: float = 0.7,
        *,
        kind: str | None = None,
        null_cond: dict[str, Any] | None = None,
        schedule: str | Callable[[float], float] = "constant",
        interval: tuple[float, float] = (0.0, 1.0),
        batched: bool = False,
    ) -> None:
        super().__init__(scale, null_cond=null_cond, schedule=schedule, interval=interval,
                         batched=batched)  # fmt: skip
        if isinstance(phi, bool) or not isinstance(phi, int | float) or not 0.0 <= phi <= 1.0:
            raise UserError(f"CFGRescale: phi must be a number in [0, 1], got {phi!r}")
        if kind is not None:
            check_kind(kind, "CFGRescale kind")
        self.phi, self.kind = float(phi), kind

    def combine(
        self, pred: Prediction, ref: Prediction, w: float, run: Run, state: Any
    ) -> Prediction:
        kind = self.kind or pred.kind
        cond = pred.get(kind)
        guided = torch.lerp(ref.get(kind), cond, w)
        # Rescale each sample's guided prediction to the conditional one's std (Alg. 2).
        std_cond = _per_sample(lambda m: m.std(dim=1), cond)
        std_guided = _per_sample(lambda m: m.std(dim=1), guided)
        factor = self.phi * std_cond / std_guided.clamp_min(1e-30) + (1.0 - self.phi)
        return pred.replace(kind, guided * factor)


@dataclass
class Momentum:
    """APG's per-run state: the running average of the guidance update (None before the first
    evaluation)."""

    average: Tensor | None = None


class APG(CFG):
    """Adaptive projected guidance (Sadat et al. 2024, "Eliminating oversaturation and artifacts
    of high guidance scales in diffusion models", Alg. 1), on the data prediction:

        Delta = D - R;   with momentum beta: Delta <- Delta + beta Delta_avg  (running average,
                                            kept per run, updated at every evaluation)
        Delta <- Delta min(1, r / ||Delta||)                 (norm threshold r > 0; per sample)
        Delta_par = (<Delta, D> / ||D||^2) D,  Delta_orth = Delta - Delta_par
        out = D + (w - 1) (Delta_orth + eta Delta_par)

    eta = 1, beta = 0 and no threshold is plain CFG. The paper's defaults for SD-XL are
    eta = 0, beta = -0.5 and r = 15 (in latent units); here the defaults are eta = 0, no
    momentum and no threshold, and the momentum runs over every model evaluation of the run (a
    two-stage solver updates it twice per step).
    """

    def __init__(
        self,
        scale: float | GuidanceScale,
        *,
        eta: float = 0.0,
        momentum: float = 0.0,
        norm_threshold: float = 0.0,
        null_cond: dict[str, Any] | None = None,
        schedule: str | Callable[[float], float] = "constant",
        interval: tuple[float, float] = (0.0, 1.0),
        batched: bool = False,
    ) -> None:
        super().__init__(scale, null_cond=null_cond, schedule=schedule, interval=interval,
                         batched=batched)  # fmt: skip
        for label, value in (
            ("eta", eta),
            ("momentum", momentum),
            ("norm_threshold", norm_threshold),
        ):
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise UserError(f"APG: {label} must be a finite number, got {value!r}")
        if norm_threshold < 0:
            raise UserError(f"APG: norm_threshold must be >= 0 (0: none), got {norm_threshold}")
        self.eta, self.momentum, self.norm_threshold = (
            float(eta),
            float(momentum),
            float(norm_threshold),
        )

    def start(self, run: Run) -> Momentum:
        super().start(run)
        return Momentum()

    def combine(
        self, pred: Prediction, ref: Prediction, w: float, run: Run, state: Momentum
    ) -> Prediction:
        d = pred.x0
        delta = d - ref.x0
        if self.momentum != 0.0:
            # Running average of the update (Alg. 1's MomentumBuffer).
            if state.average is not None:
                delta = delta + self.momentum * state.average
            state.average = delta
        if self.norm_threshold > 0:
            norm = _per_sample(lambda m: torch.linalg.vector_norm(m, dim=1), delta)
            delta = delta * torch.clamp(self.norm_threshold / norm.clamp_min(1e-30), max=1.0)
        # Split the update into its parts along and across the conditional prediction.
        parallel = (_dot(delta, d) / _dot(d, d).clamp_min(1e-30)) * d
        update = (delta - parallel) + self.eta * parallel
        return pred.replace("x0", d + (w - 1.0) * update)


class CFGZeroStar(CFG):
    """CFG-Zero* (Fan et al. 2025, "CFG-Zero*: improved classifier-free guidance for flow
    matching models", eqs. 8-9 and Alg. 1), on the velocity:

        s* = <v_c, v_u> / ||v_u||^2    (per sample: the scale of v_u closest to v_c)
        v = s* v_u + w (v_c - s* v_u)

    and zero-init: the velocity is 0 for the first ``zero_init_steps`` steps (the model is
    still called, as in the official code, so those steps count their NFE; the paper zeroes
    the first step, about 2% of 50). w = 1 with zero_init_steps = 0 is the conditional model.
    The velocity is that of the sampled path (any Gaussian path; the paper's is the linear).
    """

    def __init__(
        self,
        scale: float | GuidanceScale,
        *,
        zero_init_steps: int = 1,
        null_cond: dict[str, Any] | None = None,
        schedule: str | Callable[[float], float] = "constant",
        interval: tuple[float, float] = (0.0, 1.0),
        batched: bool = False,
    ) -> None:
        super().__init__(scale, null_cond=null_cond, schedule=schedule, interval=interval,
                         batched=batched)  # fmt: skip
        if (
            isinstance(zero_init_steps, bool)
            or not isinstance(zero_init_steps, int)
            or zero_init_steps < 0
        ):
            raise UserError(
                f"CFGZeroStar: zero_init_steps must be an int >= 0, got {zero_init_steps!r}"
            )
        self.zero_init_steps = zero_init_steps
        self.acts_at_unit_weight = zero_init_steps > 0

    def combine(
        self, pred: Prediction, ref: Prediction, w: float, run: Run, state: Any
    ) -> Prediction:
        v_c, v_u = pred.velocity, ref.velocity
        if run.index < self.zero_init_steps:
            # Zero-init: no move over the first steps.
            return pred.replace("velocity", torch.zeros_like(v_c))
        # Optimised scale (eq. 8), then CFG from the rescaled unconditional velocity (eq. 9).
        s_star = _dot(v_c, v_u) / _dot(v_u, v_u).clamp_min(1e-30)
        base = s_star * v_u
        return pred.replace("velocity", base + w * (v_c - base))
