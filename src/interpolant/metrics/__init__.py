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
from .fid import (
    KID,
    extract_features,
    frechet_distance,
    frechet_distance_from_stats,
    gaussian_stats,
    kernel_inception_distance,
    polynomial_mmd2,
)
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
    from .inception import InceptionV3, inception_features, load_inception

#: Names loaded on first use, by module (the Inception network is only built when asked for).
_INCEPTION = {"InceptionV3", "inception_features", "load_inception"}
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
    if name in _INCEPTION:
        return getattr(importlib.import_module(".inception", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "KID",
    "DigitsClassifier",
    "InceptionV3",
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
    "inception_features",
    "kernel_inception_distance",
    "load_digits_classifier",
    "load_inception",
    "median_bandwidth",
    "mmd",
    "nll_bits_per_dim",
    "polynomial_mmd2",
    "precision_recall",
    "raw_space_offset",
    "sliced_wasserstein",
    "wasserstein_1d",
]
