"""Metrics: distribution distances, feature (Frechet) distances, classifier scores, NLL.

The classifier names load lazily (PEP 562), so ``python -m interpolant.metrics.classifier``
runs its module once, as ``__main__``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .distances import (
    PrecisionRecall,
    energy_distance,
    median_bandwidth,
    mmd,
    precision_recall,
    sliced_wasserstein,
    wasserstein_1d,
)
from .fid import extract_features, frechet_distance, frechet_distance_from_stats, gaussian_stats
from .nll import nll_bits_per_dim, raw_space_offset

if TYPE_CHECKING:
    from .classifier import (
        DigitsClassifier,
        class_confidence,
        class_log_probs,
        classifier_accuracy,
        digits_features,
        load_digits_classifier,
    )

_LAZY = {
    "DigitsClassifier",
    "class_confidence",
    "class_log_probs",
    "classifier_accuracy",
    "digits_features",
    "load_digits_classifier",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(".classifier", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DigitsClassifier",
    "PrecisionRecall",
    "class_confidence",
    "class_log_probs",
    "classifier_accuracy",
    "digits_features",
    "energy_distance",
    "extract_features",
    "frechet_distance",
    "frechet_distance_from_stats",
    "gaussian_stats",
    "load_digits_classifier",
    "median_bandwidth",
    "mmd",
    "nll_bits_per_dim",
    "precision_recall",
    "raw_space_offset",
    "sliced_wasserstein",
    "wasserstein_1d",
]
