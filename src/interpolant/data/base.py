"""What every loader returns, and the one deterministic hold-out split.

Every data set, built-in or the user's, comes back as ``LoadedData(x, labels, info)``: a float32
tensor of shape (N, ...) in model space, integer labels (N,) or None, and a JSON-serialisable
:class:`DataInfo` that records the per-sample shape and the :class:`~.stats.Normalizer` that maps
raw values to model space (store ``info.to_dict()`` in a checkpoint config).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from .stats import Normalizer

SPLITS = ("train", "test", "all")


@dataclass
class DataInfo:
    """Metadata of a loaded set: per-sample shape, normalisation, classes and provenance."""

    name: str
    shape: tuple[int, ...]
    n: int
    split: str
    normalizer: Normalizer = field(default_factory=Normalizer.identity)
    classes: list[str] | None = None
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (the normalizer as its own dict)."""
        out = asdict(self)
        out["shape"] = list(self.shape)
        out["normalizer"] = self.normalizer.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataInfo:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["shape"] = tuple(d["shape"])
        d["normalizer"] = Normalizer.from_dict(d["normalizer"])
        return cls(**d)


class LoadedData(NamedTuple):
    """``(x, labels, info)``: float32 data (N, ...), int64 labels (N,) or None, metadata.

    With ``stream=True`` (or a shard folder) ``x`` is a reader of on-disk data
    (:class:`~.streaming.StreamingDataset`: ``len``, ``shape``, ``x[a:b]`` reads a batch) that
    the trainer reads through a DataLoader; the labels are in memory either way."""

    x: Tensor
    labels: Tensor | None
    info: DataInfo


def check_split(split: str) -> str:
    """Validate a split name."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


def holdout_indices(
    n: int, n_test: int, labels: np.ndarray | Tensor | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (train, test) index arrays, both sorted.

    Without labels: a permutation from ``numpy.random.default_rng(seed)``, the first ``n_test``
    indices held out. With labels (stratified): class c gets ``n_test * n_c / n`` test slots,
    rounded by largest remainder (ties to the smaller class index) so the total is ``n_test``;
    each class's indices are permuted by the same generator, visited in sorted class order.
    """
    if not 0 <= n_test <= n:
        raise ValueError(f"n_test must be in [0, {n}], got {n_test}")
    rng = np.random.default_rng(seed)
    if labels is None:
        test = rng.permutation(n)[:n_test]
    else:
        y = np.asarray(labels).reshape(-1)
        if y.shape[0] != n:
            raise ValueError(f"labels must have {n} entries, got {y.shape[0]}")
        classes, counts = np.unique(y, return_counts=True)
        quota = n_test * counts / n
        take = np.floor(quota).astype(np.int64)
        short = n_test - int(take.sum())
        order = np.argsort(-(quota - take), kind="stable")  # largest remainders first
        take[order[:short]] += 1
        parts = [rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, take)]
        test = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    mask = np.zeros(n, dtype=bool)
    mask[test] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def select(data: LoadedData, index: np.ndarray | Tensor, split: str | None = None) -> LoadedData:
    """The rows ``index`` of ``data`` (and their labels), with ``info.n``/``info.split`` updated."""
    idx = torch.as_tensor(np.asarray(index), dtype=torch.long)
    info = replace(data.info, n=int(idx.numel()), split=split or data.info.split)
    labels = None if data.labels is None else data.labels[idx]
    # A reader of on-disk data (data/streaming.py) selects without reading anything.
    subset = getattr(data.x, "subset", None)
    return LoadedData(subset(idx) if subset is not None else data.x[idx], labels, info)
