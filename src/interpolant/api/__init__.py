"""The Python face of the ``interpolant`` command: the same functions, callable from notebooks.

    from interpolant import api
    run = api.train("toy2d-flow", overrides=["train.steps=500", "train.run_dir=runs/moons"])
    samples = api.sample(run.run_dir, solver="heun", nfe=20)
    api.save_samples(samples, "runs/moons/samples")
    print(api.evaluate(samples)["metrics"])
    api.demo("demo_out")                       # what `make demo` runs

Configs: :func:`resolve_config` (preset / file / dotted overrides) builds a :class:`RunConfig`
of four sections (data, train, sample, eval); ``interpolant train --help`` lists every key.
"""

from __future__ import annotations

from typing import Any

from .config import (
    DataConfig,
    EvalConfig,
    RunConfig,
    SampleConfig,
    apply_overrides,
    config_help,
    dump_config,
    resolve_config,
)
from .demo import demo, format_demo
from .evaluate import compute_metrics, evaluate
from .presets import PRESETS, get_preset, preset_descriptions
from .runs import (
    LoadedRun,
    Samples,
    TrainResult,
    draw_samples,
    fit_model_to_data,
    load_data,
    load_run,
    plot_samples,
    read_samples,
    sample,
    save_samples,
    train,
)


def info() -> dict[str, Any]:
    """Versions, devices and every registry (paths, solvers, grids, models, data sets, time
    samplers, weightings, presets, reproductions) as a JSON-serialisable dict."""
    import platform

    import torch

    from .. import __version__
    from ..data import DATASETS
    from ..losses import TIME_SAMPLERS, WEIGHTINGS
    from ..models import MODELS
    from ..paths import PATHS
    from ..repro import list_repros
    from ..solvers import GRIDS, SOLVERS

    cuda = torch.cuda.is_available()
    devices = ["cpu"] + [
        f"cuda:{i} ({torch.cuda.get_device_name(i)})"
        for i in range(torch.cuda.device_count() if cuda else 0)
    ]
    return {
        "interpolant": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "devices": devices,
        "threads": torch.get_num_threads(),
        "paths": sorted(PATHS),
        "solvers": sorted(SOLVERS),
        "grids": list(GRIDS),
        "models": sorted(MODELS),
        "datasets": {name: spec.description for name, spec in DATASETS.items()},
        "time_samplers": sorted(TIME_SAMPLERS),
        "weightings": sorted(WEIGHTINGS),
        "presets": preset_descriptions(),
        "reproductions": {
            name: f"seed paper {r.paper}: {r.title}" for name, r in list_repros().items()
        },
    }


__all__ = [
    "PRESETS",
    "DataConfig",
    "EvalConfig",
    "LoadedRun",
    "RunConfig",
    "SampleConfig",
    "Samples",
    "TrainResult",
    "apply_overrides",
    "compute_metrics",
    "config_help",
    "demo",
    "draw_samples",
    "dump_config",
    "evaluate",
    "fit_model_to_data",
    "format_demo",
    "get_preset",
    "info",
    "load_data",
    "load_run",
    "plot_samples",
    "preset_descriptions",
    "read_samples",
    "resolve_config",
    "sample",
    "save_samples",
    "train",
]
