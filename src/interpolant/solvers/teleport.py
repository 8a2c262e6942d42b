"""Gaussian teleportation (Wang & Vastola 2023, "Diffusion models generate images like painters:
an analytical theory of outline first, details later", and the hybrid sampler of their
code): skip the first steps of sampling with the closed-form probability-flow solution of the
Gaussian fitted to the data, then continue with the learned model.

Early in sampling (high noise) the learned score is close to the score of N(mu, Sigma) fitted to
the training set, and for a Gaussian the probability-flow ODE has an exact solution: in the
eigenbasis of Sigma each mode is rescaled by sqrt(m_k(t) / m_k(t_max)), m_k = alpha^2 lam_k +
sigma^2 (:meth:`interpolant.data.GaussianMixture.flow_map`). Jumping from t_max to t_skip costs
no model evaluation; the remaining steps of the same grid run with the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from ..data.oracles import GaussianMixture, fit_gaussian
from ..paths import GaussianPath
from ..predictions import Model
from .base import get_solver
from .grids import get_grid
from .loop import SampleResult, as_model, sample


def as_gaussian(gaussian: GaussianMixture | Tensor) -> GaussianMixture:
    """A one-component :class:`GaussianMixture`: itself, or fitted to a data tensor (N, ...)."""
    if isinstance(gaussian, GaussianMixture):
        if gaussian.means.shape[0] != 1:
            raise ValueError(
                f"gaussian must have one component, got a mixture of {gaussian.means.shape[0]}"
            )
        return gaussian
    if isinstance(gaussian, Tensor):
        return fit_gaussian(gaussian)
    raise TypeError(
        f"gaussian must be a GaussianMixture with one component or a data tensor, "
        f"got {type(gaussian).__name__}"
    )


def teleport(
    gaussian: GaussianMixture | Tensor,
    noise: Tensor,
    t_skip: float,
    path: GaussianPath,
    t_max: float = 1.0,
) -> Tensor:
    """x at ``t_skip`` on the exact probability-flow trajectory of the Gaussian from
    x = sigma(t_max) * noise at ``t_max`` (no model evaluation)."""
    if not 0.0 < t_skip <= t_max <= 1.0:
        raise ValueError(f"need 0 < t_skip <= t_max <= 1, got t_skip={t_skip}, t_max={t_max}")
    g = as_gaussian(gaussian)
    sigma_max = float(path.sigma(torch.tensor(t_max, dtype=torch.float64)))
    return g.flow_map(noise * sigma_max, t_max, t_skip, path)


def teleport_sample(
    model: Model | Callable[..., Tensor],
    noise: Tensor,
    gaussian: GaussianMixture | Tensor,
    *,
    skip: int | None = None,
    skip_fraction: float | None = None,
    steps: int,
    solver: str | Any = "heun",
    grid: str | Sequence[float] | Tensor = "karras",
    t_max: float = 1.0,
    grid_options: dict[str, float] | None = None,
    solver_options: dict[str, Any] | None = None,
    return_result: bool = False,
    **sample_kwargs: Any,
) -> Tensor | SampleResult:
    """Sample with the first steps of the grid replaced by the Gaussian's closed-form flow.

    The grid is the one :func:`sample` would use for ``steps`` steps; its first ``skip`` steps
    (or ``round(skip_fraction * steps)``) are one analytic jump from t_max to ``grid[skip]``,
    and the remaining ``steps - skip`` steps run ``solver`` with the model, from the same noise.
    ``skip = 0`` is exactly ``sample(model, noise, steps=steps, ...)``.

    Args:
        model: the learned model (or a callable with ``path=``/``predicts=`` in sample_kwargs).
        noise: the standard source draw (B, ...).
        gaussian: N(mu, Sigma) as a one-component ``GaussianMixture``, or the training data
            (N, ...) to fit it to (``data.fit_gaussian``).
        skip / skip_fraction: how many of the ``steps`` steps to teleport over (give one).
        sample_kwargs: passed to :func:`sample` (seed, solver_dtype, cond, hooks, ...).
    """
    model = as_model(model, sample_kwargs.pop("path", None), sample_kwargs.pop("predicts", None))
    if (skip is None) == (skip_fraction is None):
        raise ValueError("give exactly one of skip= or skip_fraction=")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if skip is None:
        assert skip_fraction is not None
        if not 0.0 <= skip_fraction < 1.0:
            raise ValueError(f"skip_fraction must lie in [0, 1), got {skip_fraction}")
        skip = round(skip_fraction * steps)
    if isinstance(skip, bool) or not isinstance(skip, int) or not 0 <= skip < steps:
        raise ValueError(f"skip must be an int in [0, steps) = [0, {steps}), got {skip!r}")
    solver_obj = get_solver(solver, **(solver_options or {}))
    t_grid = get_grid(grid, model.path, steps, t_max=t_max, **(grid_options or {}))
    if skip == 0:
        return sample(
            model,
            noise,
            solver=solver_obj,
            grid=t_grid,
            return_result=return_result,
            **sample_kwargs,
        )
    # Closed-form jump over the first `skip` steps (the hybrid sampler of Wang & Vastola 2023).
    x_skip = teleport(gaussian, noise, float(t_grid[skip]), model.path, t_max=float(t_grid[0]))
    return sample(
        model,
        x_skip,
        solver=solver_obj,
        grid=t_grid[skip:],
        scale_noise=False,
        return_result=return_result,
        **sample_kwargs,
    )


__all__ = ["as_gaussian", "teleport", "teleport_sample"]
