"""Metrics of samples against the held-out split of their data (``interpolant eval``).

    from interpolant import api
    result = api.evaluate("runs/moons/samples")          # or a Samples object
    result["metrics"]  # {"sliced_wasserstein": ..., "mmd": ..., ...}

For 8x8 digits the default (``auto``) is the Frechet distance in the feature space of the
digit classifier shipped with the package, and precision/recall there; for other data the
distances are computed on the values (flattened).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from ..data import LoadedData
from ..errors import UserError
from .config import EVAL_METRICS, DataConfig, EvalConfig, RunConfig
from .runs import Samples, load_data, read_samples


def auto_metrics(data_name: str) -> list[str]:
    """The default metrics: Frechet distance in the digit classifier's feature space (plus
    precision/recall there) for digits; distribution distances on the values otherwise."""
    if data_name == "digits":
        return ["fd", "precision_recall"]
    return ["sliced_wasserstein", "mmd", "energy_distance", "precision_recall"]


def compute_metrics(
    x: Tensor,
    reference: Tensor,
    metrics: list[str] | tuple[str, ...] = ("auto",),
    data_name: str = "",
    seed: int = 0,
) -> dict[str, float]:
    """Metrics of samples ``x`` against ``reference`` (same per-sample shape). For digits the
    features are the shipped digit classifier's (``fd`` and ``precision_recall``)."""
    from .. import metrics as M

    if tuple(x.shape[1:]) != tuple(reference.shape[1:]):
        raise UserError(
            f"samples have shape {tuple(x.shape[1:])} per sample but the reference data "
            f"{tuple(reference.shape[1:])}: are they from the same data set?"
        )
    names: list[str] = []
    for name in metrics:
        names += auto_metrics(data_name) if name == "auto" else [name]
    digits = data_name == "digits"
    features = (lambda v: M.digits_features(v)) if digits else (lambda v: v.flatten(1).double())
    out: dict[str, float] = {}
    for name in dict.fromkeys(names):
        if name == "fd":
            out["fd_digits" if digits else "fd_raw"] = M.frechet_distance(
                x, reference, features="digits" if digits else "raw"
            )
        elif name == "sliced_wasserstein":
            out[name] = float(M.sliced_wasserstein(x, reference, seed=seed))
        elif name == "mmd":
            out[name] = float(M.mmd(x, reference))
        elif name == "energy_distance":
            out[name] = float(M.energy_distance(x, reference))
        elif name == "precision_recall":
            pr = M.precision_recall(features(reference), features(x))
            out["precision"], out["recall"] = pr.precision, pr.recall
        else:
            raise UserError(f"unknown metric {name!r}; choose from {list(EVAL_METRICS)}")
    return out


def reference_data(data: DataConfig, settings: EvalConfig) -> LoadedData:
    """The held-out split the samples are compared with."""
    return load_data(data, "test", n=settings.n_reference)


def evaluate(
    samples: Samples | str | Path,
    overrides: Any = (),
    data: DataConfig | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Metrics of ``samples`` (or the samples file/folder) against the held-out split of the
    data they were trained on (or of ``data``). ``settings`` are EvalConfig fields."""
    from .config import apply_overrides

    found = samples if isinstance(samples, Samples) else read_samples(samples)
    values = {"eval": settings}
    cfg = RunConfig.from_dict(apply_overrides(values, list(overrides))).eval
    if data is None:
        known = found.meta.get("data_config")
        if not known or not known.get("name"):
            raise UserError("the samples do not say which data they model: name it (--data NAME)")
        data = DataConfig(**known)
    reference = reference_data(data, cfg)
    x = found.x
    if reference.info.normalizer.kind == "range":  # images: compare what would be saved
        x = x.clamp(-1.0, 1.0)
    results = compute_metrics(x, reference.x, cfg.metrics, data.name, cfg.seed)
    return {
        "metrics": results,
        "n_samples": int(x.shape[0]),
        "n_reference": int(reference.x.shape[0]),
        "data": data.name,
        "features": "digits classifier" if data.name == "digits" else "values",
        "samples": found.meta.get("file", ""),
        "sample": found.meta.get("sample", {}),
    }


__all__ = ["auto_metrics", "compute_metrics", "evaluate", "reference_data"]
