"""How a pair's noise is coupled to its data point when training on teacher pairs.

Training rows are pairs (x0_i, z_i) of a teacher (``fewstep.pairs``). A :class:`PairCoupling`
says which source draw eps the loss pairs with x0_i:

* ``independent``: a fresh eps ~ N(0, I), ignoring z_i: plain rectified flow (1-RF) on the
  teacher's samples as data;
* ``paired``: eps = z_i, the teacher's own noise: reflow (k-RF, Liu et al. 2023, Eq. 5);
* ``annealed``: eps = sqrt(1 - beta_k^2) z_i + beta_k xi with fresh xi (SlimFlow, Sec. 3.2,
  "annealing reflow"): beta_k = 1 is independent, beta_k = 0 is reflow, and eps ~ N(0, I) for
  every beta since z_i and xi are independent standard normals. beta_k falls with the optimiser
  step k by a :class:`BetaSchedule` (SlimFlow's ``x0_randomness=warmup_*``);
* ``ot``: a fresh eps re-paired inside the batch by exact minibatch OT
  (``losses.coupling.Coupling("ot")``, OT-CFM), for comparison.

``h_flip`` flips x0 and eps together along the last axis with probability 1/2 per sample
(SlimFlow flips the whole batch with one coin; per sample is the same law, less variance). A
flip maps N(0, I) to itself, so the pair stays a valid coupling; it is an augmentation for data
sets that are symmetric under it (images), never for 2-D point sets.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..errors import UserError
from ..losses.coupling import Coupling

PAIR_COUPLINGS = ("independent", "paired", "annealed", "ot")
BETA_SCHEDULES = ("linear", "exp", "cos")


class BetaSchedule:
    """beta_k of annealing reflow at optimiser step k, over ``steps`` K steps (SlimFlow code,
    ``randomness_schedule``): linear 1 - min(1, k/K); exp exp(-k/K); cos
    (1 + cos(pi min(1, k/K))) / 2. All start at 1 (independent) and fall towards 0 (reflow)."""

    def __init__(self, kind: str = "linear", steps: int = 1000) -> None:
        if kind not in BETA_SCHEDULES:
            raise UserError(f"beta schedule must be one of {BETA_SCHEDULES}, got {kind!r}")
        if not (isinstance(steps, int) and steps >= 1):
            raise UserError(f"beta schedule steps must be a positive integer, got {steps!r}")
        self.kind, self.steps = kind, steps

    def __call__(self, step: int) -> float:
        r = min(1.0, step / self.steps)
        if self.kind == "linear":
            return 1.0 - r
        if self.kind == "exp":
            return math.exp(-step / self.steps)
        return (1.0 + math.cos(math.pi * r)) / 2.0

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "steps": self.steps}

    def __repr__(self) -> str:
        return f"BetaSchedule({self.kind!r}, steps={self.steps})"


class PairCoupling:
    """The coupling of a pair's noise with its data point (see the module docstring)."""

    def __init__(
        self,
        name: str = "paired",
        beta: BetaSchedule | None = None,
        h_flip: bool = False,
    ) -> None:
        if name not in PAIR_COUPLINGS:
            raise UserError(f"pair coupling must be one of {PAIR_COUPLINGS}, got {name!r}")
        if name == "annealed" and beta is None:
            raise UserError("the annealed coupling needs a BetaSchedule (beta=...)")
        self.name, self.beta, self.h_flip = name, beta, bool(h_flip)
        self._ot = Coupling("ot") if name == "ot" else None

    def beta_at(self, step: int) -> float:
        """beta_k: 1 for independent and ot, 0 for paired, the schedule for annealed."""
        if self.name == "paired":
            return 0.0
        if self.name in ("independent", "ot"):
            return 1.0
        assert self.beta is not None
        return self.beta(step)

    def couple(
        self, x0: Tensor, z: Tensor, step: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """(x0, eps) to train on at optimiser ``step`` from a batch of pairs (x0, z)."""
        if x0.shape != z.shape:
            raise UserError(f"pairs need x0 and z of one shape, got {x0.shape} and {z.shape}")
        beta = self.beta_at(step)
        if beta == 0.0:
            eps = z
        else:
            xi = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
            eps = xi if beta == 1.0 else math.sqrt(1.0 - beta**2) * z + beta * xi
        if self._ot is not None:
            eps = self._ot.pair(x0, eps, generator)
        if self.h_flip:
            flip = torch.rand(x0.shape[0], generator=generator, device=x0.device) < 0.5
            shape = (-1,) + (1,) * (x0.ndim - 1)
            x0 = torch.where(flip.view(shape), x0.flip(-1), x0)
            eps = torch.where(flip.view(shape), eps.flip(-1), eps)
        return x0, eps

    def config(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "h_flip": self.h_flip}
        if self.beta is not None:
            out["beta"] = self.beta.config()
        return out

    def __repr__(self) -> str:
        return f"PairCoupling({self.name!r}, beta={self.beta!r}, h_flip={self.h_flip})"
