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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..predictions import Model, Prediction
from ..solvers.base import Node
from .._porting import SampleContext
from .base import GuidanceScale, as_scale, evaluate


class ReferenceGuidance:
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

    Each reference call adds one to the loop's NFE (``SampleContext.nfe``), so budgets compare
    fairly with unguided sampling. With a null label, :meth:`batched` wraps the model so that
    the conditional and the unconditional halves run in one forward over ``cat([x, x])``.
    """

    def __init__(
        self,
        scale: float | GuidanceScale,
        reference: Model | None = None,
        *,
        null_cond: dict[str, Any] | None = None,
        schedule: str | Callable[[float], float] = "constant",
        interval: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        if reference is not None and not isinstance(reference, Model):
            raise TypeError(f"reference must be a Model, got {type(reference).__name__}")
        if reference is None and not null_cond:
            raise ValueError(
                "CFG needs null_cond (e.g. {'class_labels': None}) to make the unconditional "
                "prediction; autoguidance needs reference=Model(...)"
            )
        self.weight = as_scale(scale, schedule, interval, off=1.0)
        self.reference = reference
        self.null_cond = dict(null_cond or {})
        self._stash: tuple[float, Tensor] | None = None

    def __call__(self, pred: Prediction, node: Node, ctx: SampleContext) -> Prediction:
        w = self.weight(node.t)
        if w == 1.0:
            return pred
        ref = self.reference_prediction(pred, node, ctx)
        kind = pred.kind
        # D_w = R + w (D - R) in the model's own kind (eq. 1 of Karras et al. 2024).
        return pred.replace(kind, torch.lerp(ref.get(kind), pred.get(kind), w))

    def reference_prediction(self, pred: Prediction, node: Node, ctx: SampleContext) -> Prediction:
        """R at (x_t, t): from the batched forward's stash, else one call (one NFE either way)."""
        stash, self._stash = self._stash, None
        if stash is not None and stash[0] == node.t and stash[1].shape == pred.x.shape:
            ctx.nfe += 1
            model = ctx.model
            return Prediction(
                pred.x, node.t, model.predicts, stash[1].to(pred.x.dtype), node.coeffs
            )
        if self.reference is None:
            model = ctx.model
            inner = model.net.net if isinstance(model.net, BatchedGuidanceNet) else model.net
            model = Model(inner, model.path, model.predicts)
            cond = self.null_conditioning(ctx.cond, pred.x.shape[0], pred.x.device)
        else:
            model, cond = self.reference, ctx.cond
            if model.path.config() != ctx.model.path.config():
                raise ValueError(
                    f"reference is on path {model.path!r} but the sampled model is on "
                    f"{ctx.model.path!r}; guidance combines predictions on one path"
                )
        return evaluate(model, pred.x, node, cond, ctx)

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

    def batched(self, model: Model) -> Model:
        """``model`` whose network runs the conditional and the null halves in one forward over
        ``cat([x, x])`` while this hook guides (the null half waits for the hook). Needs CFG
        (no reference model) and tensor or number null entries (not None)."""
        if self.reference is not None:
            raise ValueError(
                "batched() needs CFG with a null label; autoguidance's reference "
                "is another network, so it needs two calls"
            )
        if any(v is None for v in self.null_cond.values()):
            raise ValueError(
                "batched() needs explicit null labels, e.g. {'class_labels': 10}, "
                f"not None; got null_cond={self.null_cond}"
            )
        return Model(BatchedGuidanceNet(model.net, self), model.path, model.predicts)

    def __repr__(self) -> str:
        ref = "cfg" if self.reference is None else "autoguidance"
        return f"{type(self).__name__}({ref}, {self.weight!r})"


class BatchedGuidanceNet(nn.Module):
    """``net`` evaluated once over ``cat([x, x])`` with ``cat([cond, null_cond])`` where the
    guidance weight differs from 1; returns the conditional half and leaves the null half to
    the hook (:meth:`ReferenceGuidance.reference_prediction`)."""

    def __init__(self, net: Callable[..., Tensor], guidance: ReferenceGuidance) -> None:
        super().__init__()
        self.net, self.guidance = net, guidance

    def forward(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        t_now = float(t[0])
        if self.guidance.weight(t_now) == 1.0:
            self.guidance._stash = None
            return self.net(x, t, **cond)
        null = self.guidance.null_conditioning(cond, x.shape[0], x.device)
        both = {k: _cat(cond.get(k), null[k], k) for k in null}
        out = self.net(torch.cat([x, x]), torch.cat([t, t]), **both)
        cond_half, null_half = out.chunk(2)
        self.guidance._stash = (t_now, null_half.detach())
        return cond_half


def _cat(a: Any, b: Any, key: str) -> Any:
    """Concatenate a conditional entry with its null counterpart along the batch."""
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return torch.cat([a, b.to(a.dtype)])
    if a is None and b is None:
        return None
    if not isinstance(a, Tensor) and not isinstance(b, Tensor) and a == b:
        return a
    raise ValueError(f"cannot batch cond[{key!r}]: need tensors in both halves, got {a!r}, {b!r}")


class CFG(ReferenceGuidance):
    """Classifier-free guidance: the reference is the same network with ``null_cond``
    (default ``{"class_labels": None}``, the null class of ``models.LabelEmbedding``)."""

    def __init__(
        self,
        scale: float | GuidanceScale,
        *,
        null_cond: dict[str, Any] | None = None,
        schedule: str | Callable[[float], float] = "constant",
        interval: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        null = {"class_labels": None} if null_cond is None else null_cond
        super().__init__(scale, None, null_cond=null, schedule=schedule, interval=interval)


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
            raise TypeError(f"reference must be a Model, got {type(reference).__name__}")
        super().__init__(scale, reference, schedule=schedule, interval=interval)
