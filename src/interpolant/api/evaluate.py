"""Metrics of samples against the held-out split of their data (``interpolant eval``).

    from interpolant import api
    result = api.evaluate("runs/moons/samples")          # or a Samples object
    result["metrics"]  # {"sliced_wasserstein": ..., "mmd": ..., ...}

For 8x8 digits the default (``auto``) is the Frechet distance in the feature space of the
digit classifier shipped with the package, and precision/recall there; for other data the
distances are computed on the values (flattened). With ``inception=PATH`` (pytorch-fid's
Inception-v3 weights, a file the user provides) image samples also get FID and KID, and
precision/recall are computed in the Inception features.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from ..data import LoadedData
from ..errors import UserError
from ..metrics.jackknife import UNBIASED_NOTE, energy_distance_with_stderr, mmd_with_stderr
from .config import EVAL_METRICS, DataConfig, EvalConfig, RunConfig
from .runs import Samples, load_data, read_samples

#: Metrics that are unbiased U-statistics, computed with their jackknife standard error.
UNBIASED = {"mmd": mmd_with_stderr, "energy_distance": energy_distance_with_stderr}


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
    inception: str | None = None,
) -> dict[str, float]:
    """Metrics of samples ``x`` against ``reference`` (same per-sample shape). For digits the
    features are the shipped digit classifier's (``fd`` and ``precision_recall``); with
    ``inception`` (a weights file) ``fid``/``kid`` (added to ``auto`` for images) and
    precision/recall use Inception-v3 features."""
    from .. import metrics as M

    if tuple(x.shape[1:]) != tuple(reference.shape[1:]):
        raise UserError(
            f"samples have shape {tuple(x.shape[1:])} per sample but the reference data "
            f"{tuple(reference.shape[1:])}: are they from the same data set?"
        )
    images = x.ndim == 4 and x.shape[1] in (1, 3)
    names: list[str] = []
    for name in metrics:
        extra = ["fid", "kid"] if inception and images else []
        names += auto_metrics(data_name) + extra if name == "auto" else [name]
    digits = data_name == "digits"
    features = (lambda v: M.digits_features(v)) if digits else (lambda v: v.flatten(1).double())
    if inception is not None:
        if not images:
            raise UserError(
                f"--inception needs images (N, 1 or 3, H, W); these samples have shape "
                f"{tuple(x.shape[1:])}"
            )
        import torch

        # 5.7 GFLOPs per image at 299 x 299: the GPU when there is one.
        net = M.load_inception(inception, "cuda" if torch.cuda.is_available() else "cpu")
        computed = {id(v): net.features(v, progress=True) for v in (x, reference)}

        def features(v: Tensor) -> Tensor:  # each set goes through the network once
            return computed[id(v)]

    elif {"fid", "kid"} & set(names):
        raise UserError(
            "fid and kid need Inception-v3 weights: pass --inception PATH (pytorch-fid's "
            "pt_inception-2015-12-05-*.pth; interpolant never downloads them), or use fd"
        )
    out: dict[str, float] = {}
    for name in dict.fromkeys(names):
        if name == "fid":
            out["fid"] = M.frechet_distance(features(x), features(reference), features="raw")
        elif name == "kid":
            kid = M.kernel_inception_distance(features(x), features(reference), "raw", seed=seed)
            out["kid"], out["kid_stderr"] = kid.value, kid.stderr
        elif name == "fd":
            out["fd_digits" if digits else "fd_raw"] = M.frechet_distance(
                x, reference, features="digits" if digits else "raw"
            )
        elif name == "sliced_wasserstein":
            out[name] = float(M.sliced_wasserstein(x, reference, seed=seed))
        elif name in UNBIASED:  # unbiased: may be < 0, so reported with its standard error
            estimate = UNBIASED[name](x, reference)
            out[name], out[f"{name}_stderr"] = estimate.value, estimate.stderr
        elif name == "precision_recall":
            pr = M.precision_recall(features(reference), features(x))
            out["precision"], out["recall"] = pr.precision, pr.recall
        else:
            raise UserError(f"unknown metric {name!r}; choose from {list(EVAL_METRICS)}")
    return out


def format_metrics(metrics: dict[str, float]) -> list[str]:
    """One line per metric, ``NAME_stderr`` shown as ``± SE`` after NAME; a note under them
    when unbiased estimates (which may be negative) are among them."""
    shown = [k for k in metrics if not (k.endswith("_stderr") and k[: -len("_stderr")] in metrics)]
    width = max((len(k) for k in shown), default=0)
    lines = []
    for key in shown:
        error = metrics.get(f"{key}_stderr")
        spread = f" ± {error:.2g}" if error is not None else ""
        lines.append(f"  {key:<{width}}  {metrics[key]:.6g}{spread}")
    if any(key in UNBIASED for key in shown):
        lines.append(f"  ({UNBIASED_NOTE})")
    return lines


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
    results = compute_metrics(x, reference.x, cfg.metrics, data.name, cfg.seed, cfg.inception)
    return {
        "metrics": results,
        "n_samples": int(x.shape[0]),
        "n_reference": int(reference.x.shape[0]),
        "data": data.name,
        "features": _features_label(data.name, cfg.inception),
        "samples": found.meta.get("file", ""),
        "sample": found.meta.get("sample", {}),
    }


def _features_label(data_name: str, inception: str | None) -> str:
    base = "digits classifier" if data_name == "digits" else "values"
    return base if inception is None else f"{base}; Inception-v3 ({inception}) for fid, kid, p/r"


__all__ = ["auto_metrics", "compute_metrics", "evaluate", "format_metrics", "reference_data"]
