"""Searched time grids: the grid on which a solver best reproduces the exact ODE on calibration
noise.

Seed paper 4 (AutoDiffusion, Li et al. 2023) shows that the time steps of a few-step sampler are
worth searching per model (its fitness is FID on fixed seeds); "Align Your Steps" (Sabour et al.
2024) and GITS (Chen et al. 2024) search with other objectives. Here:

* Fitness: the RMSE between the solver's samples and the exact probability-flow ODE endpoints
  (``adaptive.reference_sample``, rtol 1e-10) from the same calibration noise. It measures the
  discretisation error itself, needs no data set or feature network, and costs one adaptive
  reference solve.
* Search space: a grid is ``steps`` points at equal quantiles of a density over logsnr between
  the start (logsnr at t_max, the first node) and the last nonzero node logsnr_end = -2 log
  sigma_min, then t = 0. The log-density is piecewise linear on ``knots`` equally spaced
  points. A constant density is the uniform-logsnr grid; the density is smooth, so neighbouring
  steps have similar sizes (what multistep solvers need), and it defines a grid for every
  number of steps, not only the searched one.
* Optimiser: Nelder-Mead (Nelder & Mead 1965) on (log-density at the knots, log sigma_min),
  started from the best uniform-logsnr grid over a few sigma_min. (Restarts from the best point
  with a smaller simplex did not help at equal budget on the oracles of
  ``benchmarks/sampler_oracle.py``; a larger budget does.)

Evaluate a searched grid on noise other than the calibration noise: that is the claim (it
transfers), and the only honest measure of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..configurable import number, option
from ..errors import UserError
from ..paths import GaussianPath
from ..predictions import Model
from .adaptive import reference_sample
from .grids import GRIDS, SIGMA_MAX_CAP, Grid
from .spec import Sampler

#: Points of the fine logsnr grid on which the density is integrated.
_FINE = 4001
#: Log-densities are clipped to +-this (a ratio of e^20 between step sizes is already absurd).
_LOG_DENSITY_LIMIT = 10.0


@dataclass(frozen=True)
class DensityGrid(Grid):
    """A grid family: nodes at equal quantiles of exp(piecewise-linear log-density) over logsnr
    (the ``density`` grid: a searched grid for every number of steps).

    ``log_density`` holds the values at equally spaced knots from the start (logsnr at t_max,
    but at least -2 log SIGMA_MAX_CAP where alpha(t_max) = 0) to ``-2 log sigma_min``.
    """

    name: ClassVar[str] = "density"
    log_density: tuple[float, ...] = option(
        (0.0, 0.0), help="log-density over logsnr at equally spaced knots (>= 2)"
    )
    sigma_min: float = option(
        0.002, help="the last nonzero EDM noise level", check=number(0, open_lo=True)
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "log_density", tuple(float(v) for v in self.log_density))
        super().__post_init__()

    def validate(self) -> None:
        if len(self.log_density) < 2:
            raise UserError(f"DensityGrid needs >= 2 knots, got {len(self.log_density)}")

    def _times(self, path: GaussianPath, steps: int, t_max: float) -> Tensor:
        start = max(
            float(path.logsnr(torch.tensor(t_max, dtype=torch.float64))),
            -2.0 * math.log(SIGMA_MAX_CAP),
        )
        end = -2.0 * math.log(self.sigma_min)
        if not end > start:
            raise UserError(
                f"sigma_min={self.sigma_min} must lie below the start's noise level "
                f"{math.exp(-0.5 * start):.4g}"
            )
        knots = torch.linspace(start, end, len(self.log_density), dtype=torch.float64)
        fine = torch.linspace(start, end, _FINE, dtype=torch.float64)
        log_d = torch.tensor(self.log_density, dtype=torch.float64).clamp(
            -_LOG_DENSITY_LIMIT, _LOG_DENSITY_LIMIT
        )
        density = torch.exp(_interp(fine, knots, log_d))
        cum = torch.cat([density.new_zeros(1), torch.cumsum(0.5 * (density[1:] + density[:-1]), 0)])
        quantiles = torch.linspace(0.0, float(cum[-1]), steps, dtype=torch.float64)
        logsnr = _interp(quantiles, cum, fine)
        t = path.t_of_logsnr(logsnr).clamp(0.0, t_max)
        t[0] = t_max
        return torch.cat([t, t.new_zeros(1)])


GRIDS.register(DensityGrid)


def _log(value: float) -> float:
    """log of an error, +inf for a failed run (the optimiser minimises log RMSE)."""
    return math.log(value) if 0 < value < math.inf else (-math.inf if value == 0 else math.inf)


def _interp(x: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """Piecewise-linear interpolation (numpy.interp) for increasing ``xp``."""
    idx = torch.searchsorted(xp, x).clamp(1, len(xp) - 1)
    x0, x1, f0, f1 = xp[idx - 1], xp[idx], fp[idx - 1], fp[idx]
    weight = ((x - x0) / (x1 - x0).clamp_min(1e-300)).clamp(0.0, 1.0)
    return f0 + weight * (f1 - f0)


@dataclass
class GridSearchResult:
    """The searched grid family, its grid for the searched budget and the search's record."""

    density: DensityGrid
    grid: Tensor
    rmse: float
    start_rmse: float
    runs: int
    trace: list[float] = field(default_factory=list)


def sample_on_grid(
    model: Model,
    noise: Tensor,
    grid: Tensor,
    sampler: Sampler,
    cond: dict[str, Any] | None = None,
) -> Tensor | None:
    """The float64 sample of ``sampler`` from ``noise`` on a candidate ``grid`` (replacing the
    spec's), or None when the run diverges (non-finite values): the fitness evaluation shared by
    the grid searches (this module's Nelder-Mead, :mod:`interpolant.scaling.autodiffusion`)."""
    from .loop import sample

    spec = sampler.replace(grid=grid, nfe=None, steps=None)
    x = sample(model, noise, spec, cond=cond).x.to(torch.float64)
    return x if bool(torch.isfinite(x).all()) else None


def nelder_mead(
    f: Callable[[list[float]], float], x0: Sequence[float], step: float, budget: int
) -> tuple[list[float], float, int]:
    """Minimise f from x0 with the Nelder-Mead simplex (reflection 1, expansion 2, contraction
    1/2, shrink 1/2), using at most ``budget`` evaluations; returns (x, f(x), evaluations)."""
    n = len(x0)
    simplex = [list(map(float, x0))] + [
        [float(v) + (step if i == j else 0.0) for j, v in enumerate(x0)] for i in range(n)
    ]
    values = [f(x) for x in simplex]
    runs = n + 1

    def lerp(a: list[float], b: list[float], c: float) -> list[float]:
        return [ai + c * (bi - ai) for ai, bi in zip(a, b)]

    while runs < budget:
        order = sorted(range(n + 1), key=lambda i: values[i])
        simplex, values = [simplex[i] for i in order], [values[i] for i in order]
        centroid = [sum(p[j] for p in simplex[:-1]) / n for j in range(n)]
        reflected = lerp(centroid, simplex[-1], -1.0)
        f_r = f(reflected)
        runs += 1
        if f_r < values[0]:
            expanded = lerp(centroid, simplex[-1], -2.0)
            f_e = f(expanded)
            runs += 1
            simplex[-1], values[-1] = (expanded, f_e) if f_e < f_r else (reflected, f_r)
        elif f_r < values[-2]:
            simplex[-1], values[-1] = reflected, f_r
        else:
            inside = f_r >= values[-1]
            contracted = lerp(centroid, simplex[-1] if inside else reflected, 0.5)
            f_c = f(contracted)
            runs += 1
            if f_c < min(f_r, values[-1]):
                simplex[-1], values[-1] = contracted, f_c
            else:
                # Shrink towards the best point.
                for i in range(1, n + 1):
                    simplex[i] = lerp(simplex[0], simplex[i], 0.5)
                    values[i] = f(simplex[i])
                runs += n
    best = min(range(n + 1), key=lambda i: values[i])
    return simplex[best], values[best], runs


def search_grid(
    model: Model,
    noise: Tensor,
    sampler: Sampler,
    *,
    reference: Tensor | None = None,
    knots: int = 6,
    budget: int = 300,
    sigma_min: Sequence[float] = (0.002, 0.005, 0.01, 0.02),
    cond: dict[str, Any] | None = None,
) -> GridSearchResult:
    """Search the grid on which ``sampler`` (its solver, budget, t_max and solver dtype; its grid
    is what is searched) best matches the exact ODE.

    Args:
        model: the model to sample (a :class:`Model`).
        noise: calibration draws (B, ...), not the noise the grid will be judged on.
        sampler: the spec whose grid is searched (e.g. ``Sampler("unipc", nfe=10,
            solver_dtype="float64")``).
        reference: the exact endpoints from ``noise`` (default: ``reference_sample`` at rtol
            1e-10, the cost of a few hundred evaluations).
        knots: number of knots of the piecewise-linear log-density.
        budget: the most sampler runs the search may use (each costs ``nfe`` evaluations).
        sigma_min: candidates for the last nonzero noise level of the starting grid.

    Returns:
        A :class:`GridSearchResult`; ``result.grid`` goes to ``sample(..., grid=result.grid)``
        and ``result.density`` (a :class:`DensityGrid`) is the family's grid for any budget:
        ``sampler.replace(grid=result.density)``.
    """
    if knots < 2:
        raise UserError(f"knots must be >= 2, got {knots}")
    if budget < knots + 2:
        raise UserError(f"budget must allow a simplex of {knots + 2} runs, got {budget}")
    steps, t_max = sampler.steps_used(), sampler.t_max
    if reference is None:
        reference = reference_sample(model, noise, t_max=t_max, cond=cond)
    reference = reference.to(torch.float64)
    if reference.shape != noise.shape:
        raise UserError(f"reference has shape {tuple(reference.shape)}, noise {tuple(noise.shape)}")
    trace: list[float] = []

    def rmse(density: DensityGrid) -> float:
        try:
            t = density.times(model.path, steps, t_max)
        except ValueError:
            return math.inf
        x = sample_on_grid(model, noise, t, sampler, cond)
        if x is None:
            return math.inf
        err = float((x - reference).square().mean().sqrt())
        return err if math.isfinite(err) else math.inf

    def objective(params: list[float]) -> float:
        value = rmse(DensityGrid(tuple(params[:-1]), math.exp(params[-1])))
        trace.append(value)
        return _log(value)

    starts = [DensityGrid((0.0,) * knots, s) for s in sigma_min]
    start_errors = [rmse(d) for d in starts]
    first = min(range(len(starts)), key=lambda i: start_errors[i])
    x0 = [0.0] * knots + [math.log(starts[first].sigma_min)]
    params, value, runs = nelder_mead(objective, x0, step=0.7, budget=budget - len(starts))
    runs += len(starts)
    if not value < _log(start_errors[first]):
        params, value = x0, _log(start_errors[first])
    density = DensityGrid(tuple(params[:-1]), math.exp(params[-1]))
    best = math.exp(value)
    return GridSearchResult(
        density=density,
        grid=density.times(model.path, steps, t_max),
        rmse=best,
        start_rmse=start_errors[first],
        runs=runs,
        trace=trace,
    )
