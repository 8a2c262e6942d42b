"""From a run's sample section to a sampler run: the spec, and the plug-ins.

``sampler_of(section)`` is the one place the sample section's keys (solver, solver_options,
nfe, grid, grid_options, float64, seed) become a :class:`~interpolant.solvers.Sampler`.

A plug-in is a sample-section key whose value becomes a hook of the run, like guidance:
``sample.teleport`` (Gaussian teleportation, seed paper 32) and ``sample.skip_plan``
(AutoDiffusion's skipped blocks, seed paper 4) and ``sample.threshold`` (clipping or dynamic
thresholding of x0_hat). ``PLUGINS`` maps each key to the function that
builds its hook from the value and the run's context; ``plugin_hooks`` builds all of them, so
the code that draws samples knows none of them by name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..errors import UserError
from ..predictions import Model
from ..solvers import Hook, Sampler, Teleport, as_sampler

if TYPE_CHECKING:
    from .config import SampleConfig


def sampler_of(section: SampleConfig) -> Sampler:
    """The sampler spec of a sample section."""
    grid: Any = section.grid
    if isinstance(grid, str):
        grid = {"name": grid, **section.grid_options}
    elif section.grid_options:
        raise UserError("sample.grid_options apply to a named sample.grid, not a list of times")
    return as_sampler(
        None,
        solver={"name": section.solver, **section.solver_options},
        grid=grid,
        nfe=section.nfe if isinstance(grid, dict) else None,
        solver_dtype="float64" if section.float64 else None,
        seed=section.seed,
    )


@dataclass
class PluginContext:
    """What a plug-in may need: the model, whether the run is class-conditional, and the
    training data (a tensor, or a function that loads it; loaded only when a plug-in asks)."""

    model: Model
    conditional: bool
    data: Tensor | Callable[[], Tensor] | None = None

    def training_data(self, key: str) -> Tensor:
        if self.data is None:
            raise UserError(f"sample.{key} needs the run's training data")
        if callable(self.data):
            self.data = self.data()
        return self.data


def _teleport(value: float, ctx: PluginContext) -> Hook[Any] | None:
    if not value:
        return None
    if ctx.conditional:
        raise UserError(
            "sample.teleport fits one Gaussian to all training data, so it needs an "
            "unconditional run; this one is class-conditional"
        )
    from ..data.oracles import as_gaussian

    return Teleport(as_gaussian(ctx.training_data("teleport")), skip_fraction=float(value))


def _skip_plan(value: list[list[int]], ctx: PluginContext) -> Hook[Any] | None:
    if not value:
        return None
    from ..scaling.autodiffusion import SkipPlan

    return SkipPlan([frozenset(blocks) for blocks in value])


def _threshold(value: str | dict[str, Any] | None, ctx: PluginContext) -> Hook[Any] | None:
    if not value:
        return None
    from ..solvers import Thresholding

    if isinstance(value, str):
        return Thresholding(value)
    try:
        return Thresholding(**value)
    except TypeError as err:
        raise UserError(
            f"sample.threshold: {err}; its keys are mode, ratio, max_value, clip_range"
        ) from None


#: Sample-section key -> the hook its value makes (None: the plug-in is off).
#: The skip plan comes first: its blocks are per step of the grid it sees, the full one.
PLUGINS: dict[str, Callable[[Any, PluginContext], Hook[Any] | None]] = {
    "skip_plan": _skip_plan,
    "teleport": _teleport,
    "threshold": _threshold,
}


def plugin_hooks(section: SampleConfig, ctx: PluginContext) -> list[Hook[Any]]:
    """The hooks of every plug-in the section switches on, in ``PLUGINS`` order."""
    hooks = [make(getattr(section, key), ctx) for key, make in PLUGINS.items()]
    return [hook for hook in hooks if hook is not None]


def without_plugins(section: SampleConfig) -> SampleConfig:
    """The section with every plug-in key at its default (off): plain sampling."""
    defaults = {f.name: f for f in dataclasses.fields(section) if f.name in PLUGINS}
    return dataclasses.replace(section, **{k: _default(f) for k, f in defaults.items()})


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def class_labels(section: SampleConfig, n: int, num_classes: int | None) -> Tensor | None:
    """Labels of ``n`` samples of a conditional run: ``sample.class_label`` for all, else i % K."""
    if not num_classes:
        return None
    label = section.class_label
    if label is not None and not 0 <= label < num_classes:
        raise UserError(f"sample.class_label must lie in [0, {num_classes}), got {label}")
    return torch.full((n,), label) if label is not None else torch.arange(n) % num_classes


__all__ = [
    "PLUGINS",
    "PluginContext",
    "class_labels",
    "plugin_hooks",
    "sampler_of",
    "without_plugins",
]
