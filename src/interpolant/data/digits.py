"""scikit-learn's 8x8 handwritten digits: the built-in image set (shipped with sklearn).

1797 grey images with pixel values 0..16 (UCI optdigits test part) and labels 0..9. Images come
back as float32 (N, 1, 8, 8) in [-1, 1] through ``Normalizer.from_range(0, 16)``.

The split is fixed: :func:`~.base.holdout_indices` stratified by label with seed 0 holds out
``DIGITS_N_TEST = 297`` images (29 or 30 per class), leaving 1500 for training. The metrics'
shipped digit classifier is trained on exactly this train split and evaluated on this test split.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .base import DataInfo, LoadedData, check_split, holdout_indices
from .stats import Normalizer

DIGITS_N_TEST = 297
DIGITS_SPLIT_SEED = 0
DIGITS_RANGE = (0.0, 16.0)


def require_sklearn() -> Any:
    """Import scikit-learn or explain how to install it."""
    try:
        import sklearn.datasets
    except ImportError as err:
        raise ImportError(
            "this needs scikit-learn, an optional dependency: pip install 'interpolant[all]'"
        ) from err
    return sklearn.datasets


def load_digits(split: str = "train", classes: list[int] | None = None) -> LoadedData:
    """8x8 digits of ``split`` ("train", "test" or "all"), optionally only some ``classes``.

    Returns ``LoadedData(x (N, 1, 8, 8) float32 in [-1, 1], labels (N,) int64, info)``; the
    labels keep their digit values (0..9) when ``classes`` selects a subset.
    """
    check_split(split)
    bunch = require_sklearn().load_digits()
    pixels = np.asarray(bunch.images, dtype=np.float32)  # (1797, 8, 8), 0..16
    labels = np.asarray(bunch.target, dtype=np.int64)
    train, test = holdout_indices(len(labels), DIGITS_N_TEST, labels=labels, seed=DIGITS_SPLIT_SEED)
    index = {"train": train, "test": test, "all": np.arange(len(labels))}[split]
    if classes is not None:
        wanted = sorted({int(c) for c in classes})
        if not wanted or min(wanted) < 0 or max(wanted) > 9:
            raise ValueError(f"classes must be digits in 0..9, got {classes}")
        index = index[np.isin(labels[index], wanted)]
    normalizer = Normalizer.from_range(*DIGITS_RANGE)
    x = normalizer(torch.from_numpy(pixels[index]).unsqueeze(1))
    info = DataInfo(
        name="digits",
        shape=(1, 8, 8),
        n=len(index),
        split=split,
        normalizer=normalizer,
        classes=[str(c) for c in range(10)],
        source="sklearn.datasets.load_digits",
        extra={
            "split_rule": "stratified holdout_indices",
            "n_test": DIGITS_N_TEST,
            "split_seed": DIGITS_SPLIT_SEED,
            "selected_classes": None if classes is None else sorted({int(c) for c in classes}),
        },
    )
    return LoadedData(x, torch.from_numpy(labels[index]), info)
