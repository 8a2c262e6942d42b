"""Per-model grid calibration, opt-in: search the grid of one sampler and budget on this model.

The default rule (:mod:`.defaults`) is one fixed grid for every model. A model's own error
profile can do better at a stated cost: :func:`calibrate` draws calibration noise from its own
random stream (never the noise you will sample with), solves the exact probability-flow ODE from
it once (:func:`~.adaptive.reference_sample`), and searches the grid family of :mod:`.search`
(Nelder-Mead over a piecewise-linear log-density in log-SNR and sigma_min) on which the sampler
best reproduces those endpoints. The result is cached as JSON, so the cost is paid once per
(model, sampler, budget): ``interpolant sample RUN --grid calibrated`` calibrates on first use and
reuses the file afterwards.

Cost, counted and returned: the reference solve's evaluations plus ``runs x nfe`` per calibration
draw, e.g. about 600 + 60 x 10 evaluations per draw at NFE 10 with the default budget. The
benchmark (``benchmarks/sampler_oracle.py``) reports calibrated grids apart from fixed ones.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from ..predictions import Model
from ..randomness import Streams
from .adaptive import reference_sample
from .search import DensityGrid, search_grid
from .spec import Sampler, as_sampler

CALIBRATION_STREAM = "calibration"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Calibration:
    """A calibrated grid and what it cost.

    ``sampler`` is the spec to sample with (its grid is the calibrated :class:`DensityGrid`);
    ``rmse`` / ``start_rmse`` are the calibration draws' RMSE against the exact ODE on the
    calibrated grid and on the best uniform-logsnr start; ``nfe_spent`` counts the model
    evaluations of the calibration as a sampler's NFE is counted (each one on the batch of all
    ``draws``).
    """

    sampler: Sampler
    rmse: float
    start_rmse: float
    nfe_spent: int
    draws: int
    runs: int
    key: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "sampler": self.sampler.config(),
            "rmse": self.rmse,
            "start_rmse": self.start_rmse,
            "nfe_spent": self.nfe_spent,
            "draws": self.draws,
            "runs": self.runs,
            "key": self.key,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "calibration") -> Calibration:
        if data.get("format_version") != FORMAT_VERSION:
            raise UserError(
                f"{where}: calibration format {data.get('format_version')!r}, this version "
                f"reads {FORMAT_VERSION}; delete the file to calibrate again"
            )
        return cls(
            sampler=Sampler.from_config(data["sampler"]),
            rmse=float(data["rmse"]),
            start_rmse=float(data["start_rmse"]),
            nfe_spent=int(data["nfe_spent"]),
            draws=int(data["draws"]),
            runs=int(data["runs"]),
            key=str(data["key"]),
        )


def calibration_key(
    sampler: Sampler, shape: Sequence[int], draws: int, budget: int, seed: int, tag: str = ""
) -> str:
    """The cache key: the sampler without its grid, the sample shape, the search settings and a
    caller's ``tag`` naming the model (e.g. its checkpoint)."""
    config = {k: v for k, v in sampler.config().items() if k != "grid"}
    raw = json.dumps(
        [config, list(shape), draws, budget, seed, tag, FORMAT_VERSION], sort_keys=True, default=str
    )
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def calibrate(
    model: Model,
    shape: Sequence[int],
    sampler: Sampler | dict[str, Any] | None = None,
    *,
    nfe: int | None = None,
    draws: int = 128,
    budget: int = 60,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    tag: str = "",
    cond: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Calibration:
    """Search the grid on which ``sampler`` best reproduces this model's exact ODE.

    Args:
        model: the model to calibrate for.
        shape: one sample's shape (without the batch dimension).
        sampler: the spec whose grid is searched (default: the default rule's solver, "auto");
            ``nfe`` sets its budget when given.
        draws: calibration draws (noise from the ``"calibration"`` stream of ``seed``).
        budget: the most sampler runs the search may use.
        cache_dir: where ``calibration-<key>.json`` is read from / written to (None: no cache).
        tag: names the model in the cache key (a run's checkpoint, say), so another model never
            reuses this calibration.
        cond: conditioning for every draw (e.g. class labels of length ``draws``).
        dtype, device: the calibration noise's (float64 by default: the search compares small
            errors; a float32 network takes float32).
    """
    spec = as_sampler(sampler, **({"nfe": nfe} if nfe is not None else {}))
    if draws < 2:
        raise UserError(f"calibration needs draws >= 2, got {draws}")
    if spec.grid.fixed_steps is not None:
        raise UserError("calibrate a spec with nfe= or steps=, not a listed grid")
    key = calibration_key(spec, shape, draws, budget, seed, tag)
    path = None if cache_dir is None else Path(cache_dir) / f"calibration-{key}.json"
    if path is not None and path.exists():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise UserError(
                f"{path}: not valid JSON ({err}); delete it to calibrate again"
            ) from err
        return Calibration.from_dict(data, str(path))

    noise = Streams(seed, draws, CALIBRATION_STREAM).normal(
        tuple(shape), dtype=dtype, device=device
    )
    reference, reference_nfe = reference_sample(
        model, noise, t_max=spec.t_max, cond=cond, return_nfe=True
    )
    found = search_grid(model, noise, spec, reference=reference, budget=budget, cond=cond)
    if not math.isfinite(found.rmse):
        raise UserError(
            f"calibration found no grid on which {spec.solver.name} stays finite at "
            f"{spec.steps_used()} steps; try a larger nfe or another solver"
        )
    result = Calibration(
        sampler=spec.replace(grid=found.density),
        rmse=found.rmse,
        start_rmse=found.start_rmse,
        nfe_spent=int(reference_nfe) + found.runs * spec.nfe_used(),
        draws=draws,
        runs=found.runs,
        key=key,
    )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result.to_dict(), indent=2))
        tmp.replace(path)
    return result


__all__ = ["CALIBRATION_STREAM", "Calibration", "DensityGrid", "calibrate", "calibration_key"]
