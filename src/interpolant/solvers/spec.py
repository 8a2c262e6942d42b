"""The sampler spec: one typed, serialisable object that says how to sample.

``Sampler(solver, nfe | steps, grid, t_max, solver_dtype, seed)`` is everything a sampling run
needs besides the model, the start noise, the hooks and the conditioning. Everything that
samples (``sample``, steering, search, inverse solvers, teleportation, the command line) takes
one, so the resolution of a budget into steps and a grid is written once, here::

    spec = Sampler("dpmpp_3m", nfe=10, grid="karras")
    spec.steps_used(), spec.nfe_used(), spec.times(path)   # 10, 10, the 11 grid times
    Sampler.from_config(spec.config()) == spec

``solver`` and ``grid`` take a name, a config dict (``{"name": "ddim", "eta": 1.0}``) or the
object; a grid may also be a list of times, which fixes the number of steps.

The defaults are the default rule (``solvers.defaults``, docs/decisions.md): ``Sampler(nfe=N)``
runs the ``"auto"`` solver (UniPC of an order set by N) on the ``"auto"`` grid (uniform in
log-SNR down to sigma_min = 10 sigma_data / N^2, sigma_data the model's when it declares one).
A named solver without a grid keeps the ``"karras"`` grid (sigma 0.002 up), as before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypedDict

import torch
from torch import Tensor

from ..configurable import Configurable, number, one_of, option, optional
from ..errors import UserError
from ..paths import GaussianPath
from .base import Solver, get_solver
from .defaults import Auto as AutoSolver
from .grids import Auto as AutoGrid
from .grids import Grid, as_grid

DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass(frozen=True, init=False)
class Sampler(Configurable):
    """How to sample: the solver, the budget (``nfe`` model evaluations, or ``steps``), the time
    grid from ``t_max`` to 0, the dtype of the solver arithmetic and the seed of the per-sample
    random streams (None: drawn from torch's global generator when first needed)."""

    name: ClassVar[str] = "sampler"
    solver: Solver = option(
        "auto", help="solver name, config or object (interpolant info; auto: the default rule)"
    )
    nfe: int | None = option(
        None,
        help="model evaluations per sample (the solver picks its steps)",
        check=optional(number(0, integer=True)),
    )
    steps: int | None = option(
        None, help="solver steps (instead of nfe)", check=optional(number(1, integer=True))
    )
    grid: Grid = option(
        None,
        help="grid name, config, object or list of times (None: auto with the auto solver, "
        "else karras)",
    )
    t_max: float = option(1.0, help="the grid's first time", check=number(0, 1, open_lo=True))
    solver_dtype: str | None = option(
        None,
        help="dtype of the solver arithmetic (None: the noise's)",
        check=optional(one_of(*DTYPES)),
    )
    seed: int | None = option(
        None,
        help="seed of the per-sample streams (sample i: derive_seed(stream, seed, i))",
        check=optional(number(integer=True)),
    )

    def __init__(
        self,
        solver: str | Mapping[str, Any] | Solver | None = "auto",
        nfe: int | None = None,
        steps: int | None = None,
        grid: str | Mapping[str, Any] | Grid | Sequence[float] | Tensor | None = None,
        t_max: float = 1.0,
        solver_dtype: str | torch.dtype | None = None,
        seed: int | None = None,
    ) -> None:
        # The fields hold the built objects; names, configs and lists are accepted here.
        if isinstance(solver_dtype, torch.dtype):
            solver_dtype = str(solver_dtype).removeprefix("torch.")
        built = get_solver("auto" if solver is None else solver)
        if grid is None:
            grid = AutoGrid() if isinstance(built, AutoSolver) else "karras"
        values = {
            "solver": built,
            "nfe": nfe,
            "steps": steps,
            "grid": as_grid(grid),
            "t_max": t_max,
            "solver_dtype": solver_dtype,
            "seed": seed,
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)
        self.__post_init__()

    def validate(self) -> None:
        fixed = self.grid.fixed_steps
        if fixed is not None:
            if self.nfe is not None:
                raise UserError(
                    f"a listed grid fixes the steps ({fixed}); leave nfe unset "
                    f"(it would cost {self.solver.nfe_for_steps(fixed)})"
                )
            if self.steps is not None and self.steps != fixed:
                raise UserError(f"a listed grid of {fixed} steps cannot run steps={self.steps}")
        elif (self.nfe is None) == (self.steps is None):
            raise UserError("give exactly one of nfe= or steps= (or a list of times as the grid)")
        self.steps_used()  # a budget too small for the solver fails here, not mid-run

    def steps_used(self) -> int:
        """The number of solver steps (from the listed grid, ``steps`` or ``nfe``)."""
        fixed = self.grid.fixed_steps
        if fixed is not None:
            return fixed
        if self.steps is not None:
            return self.steps
        assert self.nfe is not None  # validate() guarantees one of the three
        return self.solver.steps_for_nfe(self.nfe)

    def nfe_used(self) -> int:
        """Model evaluations per sample that the solver spends (hooks may add more)."""
        return self.solver.nfe_for_steps(self.steps_used())

    def times(self, path: GaussianPath, sigma_data: float | None = None) -> Tensor:
        """The descending time grid (float64) on ``path``; ``sigma_data`` (the model's, when it
        declares one) fills in an auto grid's unset sigma_data."""
        grid = self.grid
        if isinstance(grid, AutoGrid) and grid.sigma_data is None and sigma_data is not None:
            grid = AutoGrid(sigma_data=sigma_data)
        return grid.times(path, self.steps_used(), self.t_max)

    @property
    def dtype(self) -> torch.dtype | None:
        """The solver arithmetic's torch dtype (None: the noise's)."""
        return None if self.solver_dtype is None else DTYPES[self.solver_dtype]

    def config(self) -> dict[str, Any]:
        out = super().config()
        out.pop("name", None)
        return out

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Sampler:
        return cls(**dict(config))


class SamplerOptions(TypedDict, total=False):
    """The keyword shortcuts of :func:`~interpolant.solvers.loop.sample` (the fields of
    :class:`Sampler`)."""

    solver: str | dict[str, Any] | Solver | None
    nfe: int | None
    steps: int | None
    grid: str | dict[str, Any] | Grid | Sequence[float] | Tensor | None
    t_max: float
    solver_dtype: str | torch.dtype | None
    seed: int | None


def as_sampler(sampler: Sampler | Mapping[str, Any] | None = None, **options: Any) -> Sampler:
    """The one place keyword shortcuts become a :class:`Sampler`: ``sampler`` with ``options``
    replaced (a spec, its config dict, or None for the defaults)."""
    if sampler is None:
        return Sampler(**options)
    if isinstance(sampler, Mapping):
        return Sampler(**{**dict(sampler), **options})
    if not isinstance(sampler, Sampler):
        raise UserError(f"sampler must be a Sampler (or its config), got {type(sampler).__name__}")
    if not options:
        return sampler
    # A budget given as a shortcut replaces the spec's (nfe and steps exclude each other), and
    # a listed grid, which fixes the steps, replaces both.
    if "grid" in options and as_grid(options["grid"]).fixed_steps is not None:
        options.setdefault("nfe", None)
        options.setdefault("steps", None)
    if "nfe" in options and "steps" not in options:
        options["steps"] = None
    if "steps" in options and "nfe" not in options:
        options["nfe"] = None
    return Sampler(**{**_fields_of(sampler), **options})


def _fields_of(sampler: Sampler) -> dict[str, Any]:
    return {f.name: getattr(sampler, f.name) for f in dataclasses.fields(sampler)}


__all__ = ["DTYPES", "Sampler", "SamplerOptions", "as_sampler"]
