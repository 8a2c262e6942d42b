"""Gaussian teleportation (Wang & Vastola 2023, "Diffusion models generate images like painters:
an analytical theory of outline first, details later", and the hybrid sampler of their
code): skip the first steps of sampling with the closed-form probability-flow solution of the
Gaussian fitted to the data, then continue with the learned model.

Early in sampling (high noise) the learned score is close to the score of N(mu, Sigma) fitted to
the training set, and for a Gaussian the probability-flow ODE has an exact solution: in the
eigenbasis of Sigma each mode is rescaled by sqrt(m_k(t) / m_k(t_max)), m_k = alpha^2 lam_k +
sigma^2 (:meth:`interpolant.data.GaussianMixture.flow_map`). Jumping from t_max to t_skip costs
no model evaluation; the remaining steps of the same grid run with the model.

:class:`Teleport` is a hook that changes the run's plan (a plug-in of the sampler spec): any
sampler, any other hooks. The Gaussian is anything with ``flow_map`` (a one-component
``GaussianMixture``; ``data.as_gaussian`` fits one to data).
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor

from ..errors import UserError
from ..paths import GaussianPath
from ..predictions import Model
from .hooks import Hook, Plan
from .loop import SampleResult, sample
from .spec import Sampler


class GaussianFlow(Protocol):
    """A Gaussian whose probability-flow ODE has a closed-form solution."""

    def flow_map(self, x: Tensor, t_from: float, t_to: float, path: GaussianPath) -> Tensor: ...


def teleport(
    gaussian: GaussianFlow,
    noise: Tensor,
    t_skip: float,
    path: GaussianPath,
    t_max: float = 1.0,
) -> Tensor:
    """x at ``t_skip`` on the exact probability-flow trajectory of the Gaussian from
    x = sigma(t_max) * noise at ``t_max`` (no model evaluation)."""
    if not 0.0 < t_skip <= t_max <= 1.0:
        raise UserError(f"need 0 < t_skip <= t_max <= 1, got t_skip={t_skip}, t_max={t_max}")
    sigma_max = float(path.sigma(torch.tensor(t_max, dtype=torch.float64)))
    return gaussian.flow_map(noise * sigma_max, t_max, t_skip, path)


class Teleport(Hook[None]):
    """Replace the first ``skip`` steps of the run's grid (or ``round(skip_fraction * steps)``)
    by one analytic jump along the Gaussian's flow; the remaining steps run the sampler with
    the model from the jumped state. ``skip = 0`` leaves the run unchanged."""

    def __init__(
        self,
        gaussian: GaussianFlow,
        *,
        skip: int | None = None,
        skip_fraction: float | None = None,
    ) -> None:
        if not callable(getattr(gaussian, "flow_map", None)):
            raise UserError(
                f"gaussian must have a closed-form flow_map (a one-component GaussianMixture; "
                f"data.as_gaussian fits one), got {type(gaussian).__name__}"
            )
        if (skip is None) == (skip_fraction is None):
            raise UserError("give exactly one of skip= or skip_fraction=")
        if skip_fraction is not None and not 0.0 <= skip_fraction < 1.0:
            raise UserError(f"skip_fraction must lie in [0, 1), got {skip_fraction}")
        if skip is not None and (isinstance(skip, bool) or not isinstance(skip, int) or skip < 0):
            raise UserError(f"skip must be an int >= 0, got {skip!r}")
        self.gaussian, self.skip, self.skip_fraction = gaussian, skip, skip_fraction

    def steps_skipped(self, steps: int) -> int:
        """How many of ``steps`` steps the jump replaces."""
        skip = round(self.skip_fraction * steps) if self.skip_fraction is not None else self.skip
        if skip is None:  # the constructor asks for exactly one of the two
            raise UserError("give exactly one of skip= or skip_fraction=")
        if not 0 <= skip < steps:
            raise UserError(f"skip must lie in [0, steps) = [0, {steps}), got {skip}")
        return skip

    def prepare(self, plan: Plan) -> Plan:
        skip = self.steps_skipped(len(plan.grid) - 1)
        if skip == 0:
            return plan
        # Closed-form jump over the first `skip` steps (the hybrid sampler of Wang & Vastola 2023).
        t_from, t_to = float(plan.grid[0]), float(plan.grid[skip])
        x = self.gaussian.flow_map(plan.x, t_from, t_to, plan.model.path).to(plan.x.dtype)
        return Plan(plan.model, plan.grid[skip:], x)

    def __repr__(self) -> str:
        amount = f"skip={self.skip}" if self.skip is not None else f"fraction={self.skip_fraction}"
        return f"Teleport({amount})"


def teleport_sample(
    model: Model,
    noise: Tensor,
    gaussian: GaussianFlow,
    sampler: Sampler | None = None,
    *,
    skip: int | None = None,
    skip_fraction: float | None = None,
    **sample_kwargs: Any,
) -> SampleResult:
    """``sample`` with a :class:`Teleport` hook first (``sample_kwargs``: hooks, cond, index and
    the sampler shortcuts)."""
    hooks = [Teleport(gaussian, skip=skip, skip_fraction=skip_fraction)]
    hooks += list(sample_kwargs.pop("hooks", ()))
    return sample(model, noise, sampler, hooks=hooks, **sample_kwargs)


__all__ = ["GaussianFlow", "Teleport", "teleport", "teleport_sample"]
