"""One entry point for every data set: ``load_dataset(name_or_path, n, split, seed)``.

Sampled sets (toy 2-D sets and the Gaussian-mixture oracles) draw ``n`` i.i.d. points from a
``torch.Generator`` seeded with ``derive_seed("data-<split>", seed)`` (``interpolant.randomness``),
so the train and test streams never share draws, nor any other stream derived from the same seed.
An explicit ``generator`` overrides both. Finite sets (digits, the user's files) have fixed
splits; ``n`` then takes a random subset (drawn from the split's stream); the hold-out of the
user's files is drawn with ``derive_seed("data-holdout", seed)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import torch

from ..errors import MissingFileError, UserError
from ..randomness import derive_seed
from .base import DataInfo, LoadedData, check_split, holdout_indices, select
from .digits import load_digits
from .files import load_files
from .oracles import ORACLES, GaussianMixture
from .shards import MANIFEST
from .stats import Normalizer
from .streaming import StreamingDataset, is_stream, open_stream
from .toy import TOY_CLASSES, TOY_SETS, ToySampler

DEFAULT_N = {"train": 10_000, "test": 2_000}


@dataclass(frozen=True)
class DatasetSpec:
    """A registered set: ``load(n, split, generator, **params) -> LoadedData``."""

    name: str
    sampled: bool
    description: str
    load: Callable[..., LoadedData]


def split_generator(seed: int, split: str) -> torch.Generator:
    """The generator of a set's ``split`` stream: seeded with ``derive_seed("data-<split>",
    seed)``."""
    return torch.Generator().manual_seed(derive_seed(f"data-{split}", seed))


def _sampled(
    name: str, sampler: ToySampler, classes: list[str] | None
) -> Callable[..., LoadedData]:
    def load(n: int, split: str, generator: torch.Generator, **params: Any) -> LoadedData:
        x, labels = sampler(n, generator=generator, **params)
        info = DataInfo(
            name=name,
            shape=tuple(x.shape[1:]),
            n=n,
            split=split,
            normalizer=Normalizer.identity(),
            classes=classes,
            source=f"interpolant.data:{name}",
            extra={"params": params},
        )
        return LoadedData(x.float(), labels, info)

    return load


def _oracle_sampler(name: str) -> ToySampler:
    def sample(n: int, generator: torch.Generator | None = None, **params: Any):
        make = cast(Callable[..., GaussianMixture], ORACLES[name])
        return make(**params).sample(n, generator=generator).float(), None

    return sample


def _digits(n: int | None, split: str, generator: torch.Generator, **params: Any) -> LoadedData:
    return load_digits(split, **params)


def _series(n: int | None, split: str, generator: torch.Generator, **params: Any) -> LoadedData:
    """Windows of time series (``interpolant.timeseries.dataset``; imported when used)."""
    from ..timeseries.dataset import load_series_data

    return cast(LoadedData, load_series_data(n, split, generator, **params))


DATASETS: dict[str, DatasetSpec] = {
    **{
        k: DatasetSpec(k, True, (f.__doc__ or "").split("\n")[0], _sampled(k, f, TOY_CLASSES[k]))
        for k, f in TOY_SETS.items()
    },
    **{
        k: DatasetSpec(
            k, True, (f.__doc__ or "").split("\n")[0], _sampled(k, _oracle_sampler(k), None)
        )
        for k, f in ORACLES.items()
    },
    "digits": DatasetSpec(
        "digits", False, "sklearn's 8x8 digits, (1, 8, 8) in [-1, 1], 1500/297 split", _digits
    ),
    "series": DatasetSpec(
        "series",
        False,
        "windows of time series (data.options.source: co2, elnino, sunspots, nile, "
        "macrodata:COLUMN or a .csv/.npy file; docs/howto/time-series.md)",
        _series,
    ),
}
"""Name -> :class:`DatasetSpec` (toy 2-D sets, oracles, digits)."""


def _subset(data: LoadedData, n: int | None, g: torch.Generator) -> LoadedData:
    """``n`` rows drawn without replacement (kept in file order), or all rows for n=None."""
    if n is None or n == data.x.shape[0]:
        return data
    if n > data.x.shape[0] or n < 1:
        raise UserError(f"n must be in [1, {data.x.shape[0]}] for {data.info.name!r}, got {n}")
    index = torch.randperm(data.x.shape[0], generator=g)[:n].sort().values
    return select(data, index.numpy())


def _load_path(name: str, params: dict[str, Any]) -> LoadedData:
    """The user's files (:func:`~.files.load_files`; ``stream=True`` keeps them on disk), or a
    shard folder, which streams unless ``stream=False``."""
    if not (Path(name) / MANIFEST).is_file():
        return load_files(name, **params)
    options = dict(params)
    stream = options.pop("stream", True)
    if options or not isinstance(stream, bool):
        raise UserError(
            f"{name} is a shard folder: its only data option is stream (true or false), got "
            f"{params}"
        )
    reader = open_stream(name)
    return reader.loaded() if stream else reader.loaded()._replace(x=reader.to_tensor())


def load_dataset(
    name: str,
    n: int | None = None,
    split: str = "train",
    generator: torch.Generator | None = None,
    seed: int = 0,
    test_fraction: float = 0.1,
    **params: Any,
) -> LoadedData:
    """Load a registered set by name, or the user's files by path.

    ``n``: sample count for sampled sets (default 10000 train / 2000 test), or a random subset
    of a finite set (default: all of the split). ``split``: "train", "test" or (finite sets only)
    "all". For a path, ``params`` go to :func:`~.files.load_files` (``stream=True``: to the
    on-disk reader of :func:`~.streaming.open_stream`, whose "train" and "all" splits stay on
    disk while "test" is read into memory; a shard folder streams unless ``stream=False``) and
    "train"/"test" are a
    deterministic hold-out of ``test_fraction`` (stratified by label if there are labels, drawn
    with ``derive_seed("data-holdout", seed)``). Returns ``LoadedData(x float32 (N, ...), labels
    or None, info)``.
    """
    check_split(split)
    g = generator if generator is not None else split_generator(seed, split)
    spec = DATASETS.get(name)
    if spec is not None and spec.sampled:
        if split == "all":
            raise UserError(f"{name!r} is sampled: split must be 'train' or 'test', not 'all'")
        count = DEFAULT_N[split] if n is None else n
        data = spec.load(count, split, g, **params)
    elif spec is not None:
        data = _subset(spec.load(n, split, g, **params), n, g)
    elif Path(name).exists():
        data = _load_path(name, params)
        if split != "all":
            if not 0 < test_fraction < 1:
                raise UserError(f"test_fraction must be in (0, 1), got {test_fraction}")
            total = data.x.shape[0]
            n_test = round(test_fraction * total)
            holdout_seed = derive_seed("data-holdout", seed)
            train, test = holdout_indices(total, n_test, labels=data.labels, seed=holdout_seed)
            data = select(data, train if split == "train" else test, split)
            extra = {**data.info.extra, "test_fraction": test_fraction, "split_seed": seed}
            data = data._replace(info=replace(data.info, extra=extra))
        data = _subset(data, n, g)
        if split == "test" and is_stream(data.x):  # the held-out share is compared in memory
            data = data._replace(x=cast(StreamingDataset, data.x).to_tensor())
    else:
        raise MissingFileError(
            f"unknown data set {name!r}: not a registered name ({', '.join(DATASETS)}) "
            "and no such file or folder"
        )
    if generator is None:
        data.info.extra.setdefault("seed", seed)
    return data
