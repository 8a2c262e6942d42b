"""Reflow and SlimFlow: straightening a flow on teacher pairs, then one-step distillation.

Conventions: our linear path x_t = (1 - t) x0 + t eps (t = 0 data), velocity u = eps - x0.
SlimFlow writes x_t = t x1 + (1 - t) x0 with t = 1 data and v = x1 - x0 = -u; every formula
below is theirs with t -> 1 - t and v -> -u.

**Reflow** (Liu et al. 2023, Eq. 5; SlimFlow Eq. 4) on pairs (x0_i, z_i) of a teacher:

    L = E_t D(u_s(x_t, t), eps - x0),  x_t = (1 - t) x0 + t eps,  eps from the pair coupling,

with ``PairCoupling("paired")`` (k-rectified flow: eps = z_i), ``"annealed"`` (SlimFlow's
annealing reflow, eps = sqrt(1 - beta_k^2) z_i + beta_k xi, for a student of another
architecture started from random weights) or ``"independent"`` (1-RF on the teacher's samples).

**Flow-guided distillation** (SlimFlow Sec. 3.3, Eq. 7-8, ``teacher_loss_new``): a one-step
student x0 = eps - u_s(eps, 1) trained with

    L_distill = D(u_s(z_i, 1), z_i - x0_i)                                      (pairs)
    L_guide   = D(u_s(xi, 1), sg(xi - x0_hat)),  xi fresh,  s ~ U[s_lo, s_hi],
                x_s = xi - s sg(u_s(xi, 1)),  x0_hat = x_s - (1 - s) u_T(x_s, 1 - s),

i.e. the student moves a fraction s of the way, the (2-RF) teacher finishes with one Euler step,
and the student is pulled towards the combined displacement, on unlimited fresh noise.
``guidance=0`` is the naive pairs-only distillation. SlimFlow uses D = LPIPS on 64x64 images;
LPIPS weights cannot ship here (``fewstep.distances``), so the default is L2.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..errors import UserError
from ..paths import Linear
from ..predictions import Model
from .common import StepCounter, check_teacher, predict, require_linear, times
from .couplings import PairCoupling
from .distances import Distance, get_distance
from .pairs import split_rows

LINEAR = Linear()


class Reflow(StepCounter):
    """k-rectified flow / annealing reflow on pair rows (see the module docstring).

    Args:
        coupling: a :class:`PairCoupling` (default ``paired``: plain reflow).
        distance: "l2", "pseudo-huber" or a callable D(a, b) -> (B,).
        t_min, t_max: t ~ U[t_min, t_max] (SlimFlow: [1e-3, 1] in their time).
    """

    def __init__(
        self,
        coupling: PairCoupling | None = None,
        distance: str | Distance = "l2",
        t_min: float = 0.0,
        t_max: float = 1.0,
    ) -> None:
        super().__init__()
        self.coupling = coupling if coupling is not None else PairCoupling("paired")
        if not isinstance(self.coupling, PairCoupling):
            raise UserError(f"coupling must be a PairCoupling, got {self.coupling!r}")
        if not 0.0 <= t_min < t_max <= 1.0:
            raise UserError(f"need 0 <= t_min < t_max <= 1, got {t_min}, {t_max}")
        self.distance = get_distance(distance)
        self.t_min, self.t_max = t_min, t_max

    def per_sample_loss(
        self,
        model: Any,
        rows: Tensor,
        generator: torch.Generator | None = None,
        cond: dict[str, Any] | None = None,
    ) -> Tensor:
        require_linear(model, "student", "reflow")
        x0, z = split_rows(rows)
        x0, eps = self.coupling.couple(x0, z, self.step, generator)
        t = times(x0.shape[0], generator, x0.device, self.t_min, self.t_max).to(x0.dtype)
        x_t = LINEAR.sample_xt(x0, t, eps)
        return self.distance(predict(model, x_t, t, cond).velocity, eps - x0)

    def loss(
        self,
        model: Any,
        rows: Tensor,
        generator: torch.Generator | None = None,
        cond: dict[str, Any] | None = None,
    ) -> Tensor:
        return self.per_sample_loss(model, rows, generator, cond).mean()


class FlowGuidedDistillation(StepCounter):
    """SlimFlow's one-step distillation (see the module docstring).

    Args:
        teacher: the guiding flow (a Model on the linear path, usually the 2-RF model the
            student was reflowed into); frozen.
        guidance: weight of L_guide (0: naive pairs-only distillation).
        distance: "l2", "pseudo-huber" or a callable.
        s_range: the fraction s of the way the student moves before the teacher finishes.
    """

    def __init__(
        self,
        teacher: Model | None,
        guidance: float = 1.0,
        distance: str | Distance = "l2",
        s_range: tuple[float, float] = (0.2, 0.8),
    ) -> None:
        super().__init__()
        if guidance < 0:
            raise UserError(f"guidance must be >= 0, got {guidance}")
        if guidance > 0:
            if teacher is None:
                raise UserError("flow-guided distillation with guidance > 0 needs a teacher")
            self.teacher: Model | None = check_teacher(teacher, "flow-guided distillation")
            require_linear(teacher, "teacher", "flow-guided distillation")
        else:
            self.teacher = None
        lo, hi = s_range
        if not 0.0 < lo <= hi < 1.0:
            raise UserError(f"s_range must satisfy 0 < lo <= hi < 1, got {s_range}")
        self.guidance, self.s_range = float(guidance), (float(lo), float(hi))
        self.distance = get_distance(distance)

    def per_sample_loss(
        self,
        model: Any,
        rows: Tensor,
        generator: torch.Generator | None = None,
        cond: dict[str, Any] | None = None,
    ) -> Tensor:
        require_linear(model, "student", "flow-guided distillation")
        x0, z = split_rows(rows)
        ones = torch.ones(x0.shape[0], device=x0.device, dtype=x0.dtype)
        loss = self.distance(predict(model, z, ones, cond).velocity, z - x0)
        if self.teacher is None:
            return loss
        self.teacher.to(x0.device)
        xi = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        u = predict(model, xi, ones, cond).velocity
        s = times(x0.shape[0], generator, x0.device, *self.s_range).to(x0.dtype)
        sb = s.view(-1, *([1] * (x0.ndim - 1)))
        with torch.no_grad():
            x_s = xi - sb * u.detach()
            u_teacher = self.teacher(x_s, 1 - s, **(cond or {})).velocity
            x0_hat = x_s - (1 - sb) * u_teacher
        return loss + self.guidance * self.distance(u, xi - x0_hat)

    def loss(
        self,
        model: Any,
        rows: Tensor,
        generator: torch.Generator | None = None,
        cond: dict[str, Any] | None = None,
    ) -> Tensor:
        return self.per_sample_loss(model, rows, generator, cond).mean()
