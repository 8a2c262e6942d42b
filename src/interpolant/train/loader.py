"""Streaming data for the trainer: a DataLoader whose batches are the sampler's micro-batches.

The examples of update ``step`` on rank ``k`` are ``StepSampler.rank_indices(step, k, W)``, a pure
function of (seed, step) (``sampler.py``). :class:`StepBatches` yields exactly those, split into
the accumulation rounds ``[r b, (r + 1) b)``, from a start step onward, as a ``batch_sampler``;
DataLoader workers read them ahead (``num_workers``, ``prefetch_factor``, pinned memory on CUDA).
The trainer therefore sees the same rows in the same order as with the data in memory, and a
resumed run restarts the stream at its step: resume stays exact with nothing but ``step``. The
stream position is still written into every checkpoint (``data.position``) and compared on
resume, so a change of batch size or data set size, which moves the stream, is reported.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import UserError
from .sampler import StepSampler

#: Items hashed by the fingerprint of a Dataset that has no ``fingerprint()`` of its own.
FINGERPRINT_ITEMS = 16


def stream_position(step: int, batch_size: int, n: int) -> dict[str, int]:
    """Where update ``step`` starts reading: examples consumed, and (epoch, offset) in the
    per-epoch permutations (``sampler.py``)."""
    examples = step * batch_size
    return {"step": step, "examples": examples, "epoch": examples // n, "offset": examples % n}


def position_change(before: dict[str, int] | None, now: dict[str, int]) -> str | None:
    """What to log when a checkpoint's stream position ``before`` differs from ``now``, where
    the stateless order resumes: they differ when the batch size or the data set's size
    changed (the stream then jumps; examples of the interrupted epoch repeat or are skipped)."""
    if before is None or (before.get("epoch"), before.get("offset")) == (
        now["epoch"],
        now["offset"],
    ):
        return None
    return (
        f"the data stream resumes at epoch {now['epoch']}, example {now['offset']}; the "
        f"checkpoint stopped at epoch {before.get('epoch')}, example {before.get('offset')} "
        "(batch size or data size changed)"
    )


def check_loader_options(num_workers: Any, prefetch_factor: Any) -> None:
    """Refuse impossible DataLoader settings (config keys ``num_workers``, ``prefetch_factor``)."""
    if not isinstance(num_workers, int) or isinstance(num_workers, bool) or num_workers < 0:
        raise UserError(f"num_workers must be an int >= 0, got {num_workers!r}")
    if prefetch_factor is not None:
        if not isinstance(prefetch_factor, int) or prefetch_factor < 1:
            raise UserError(
                f"prefetch_factor must be a positive int or None, got {prefetch_factor}"
            )
        if num_workers == 0:
            raise UserError("prefetch_factor needs num_workers > 0 (workers read ahead)")


def _item_tensor(item: Any) -> Tensor:
    """A Dataset item as its data tensor: the item, or the first entry of a tuple (x, y)."""
    x = item[0] if isinstance(item, tuple | list) else item
    if not isinstance(x, Tensor):
        x = torch.as_tensor(np.asarray(x))
    return x


def dataset_fingerprint(dataset: Dataset) -> str:
    """The dataset's own ``fingerprint()`` (a manifest's, or sampled rows of a memory map), else
    sha256 of its length and ``FINGERPRINT_ITEMS`` evenly spaced items: cheap, never all of it."""
    own = getattr(dataset, "fingerprint", None)
    if callable(own):
        return str(own())
    n = len(dataset)  # type: ignore[arg-type]
    sha = hashlib.sha256(f"{type(dataset).__name__}|{n}".encode())
    for i in sorted(
        {round(k * (n - 1) / max(FINGERPRINT_ITEMS - 1, 1)) for k in range(FINGERPRINT_ITEMS)}
    ):
        sha.update(_item_tensor(dataset[i]).detach().cpu().contiguous().numpy().tobytes())
    return sha.hexdigest()


def sample_shape(dataset: Dataset) -> tuple[int, ...]:
    """Per-sample shape: the reader's ``sample_shape``, else that of item 0."""
    shape = getattr(dataset, "sample_shape", None)
    if shape is not None:
        return tuple(int(s) for s in shape)
    return tuple(_item_tensor(dataset[0]).shape)


def describe_data(
    data: Tensor | Dataset,
    fingerprint: str,
    info: dict[str, Any],
    encoder: Any,
    batch_size: int,
) -> dict[str, Any]:
    """The data description every checkpoint holds (``state.json``'s ``data``): size, shape,
    dtype, fingerprint, the loader's info, the streamed reader's kind (None: a tensor), the
    encoder's name, and the stream position (updated as training reads)."""
    tensor = isinstance(data, Tensor)
    n = int(data.shape[0]) if isinstance(data, Tensor) else len(data)  # type: ignore[arg-type]
    return {
        "n": n,
        "shape": list(data.shape[1:]) if isinstance(data, Tensor) else list(sample_shape(data)),
        "dtype": str(data.dtype).replace("torch.", "") if isinstance(data, Tensor) else "float32",
        "fingerprint": fingerprint,
        "info": info,
        "stream": None if tensor else getattr(data, "kind", type(data).__name__),
        "encoder": None
        if encoder is None
        else getattr(encoder, "__name__", type(encoder).__name__),
        "position": stream_position(0, batch_size, n),
    }


class _Rows(Dataset):
    """``__getitems__(indices)`` -> (indices, batch, indices actually read) of ``dataset``
    (a reader's ``fetch``; any other map-style Dataset item by item)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitems__(self, indices: list[int]) -> tuple[Tensor, Tensor, Tensor]:
        idx = torch.tensor(indices, dtype=torch.long)
        fetch = getattr(self.dataset, "fetch", None)
        if callable(fetch):
            x, used = fetch(indices)
            return idx, x, used
        x = torch.stack([_item_tensor(self.dataset[i]) for i in indices])
        return idx, x, idx

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        return self.__getitems__([index])


def _as_batch(batch: Any) -> Any:
    """collate_fn: ``_Rows`` already returns a batch."""
    return batch


class StepBatches(Sampler[list[int]]):
    """Rank ``rank``'s micro-batches of updates ``start_step .. stop_step - 1``, round by round,
    starting at round ``start_round`` of the first."""

    def __init__(
        self,
        sampler: StepSampler,
        start_step: int,
        stop_step: int,
        rank: int,
        world_size: int,
        batch_per_gpu: int,
        rounds: int,
        start_round: int = 0,
    ):
        self.sampler, self.start, self.stop = sampler, start_step, stop_step
        self.rank, self.world_size = rank, world_size
        self.b, self.rounds, self.start_round = batch_per_gpu, rounds, start_round

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            indices = self.sampler.rank_indices(step, self.rank, self.world_size)
            for r in range(self.start_round if step == self.start else 0, self.rounds):
                yield indices[r * self.b : (r + 1) * self.b].tolist()

    def __len__(self) -> int:
        return max(0, (self.stop - self.start) * self.rounds - self.start_round)


class StreamFeed:
    """The micro-batches of a Dataset, read ahead by a DataLoader in the trainer's order.

    :meth:`batch` is called with the indices the trainer expects. With no workers it reads them
    itself (a DataLoader iterator per micro-batch, and re-deriving the order, cost more than the
    read: 0.55 against 0.09 ms for 64 rows of 32 x 32 under load). With workers the DataLoader
    iterator is
    (re)started whenever the request is not the next one it would yield (the first call, a
    resume), and every batch it yields is checked against the request, so the stream cannot
    drift from the sampler. Replaced images (a reader with ``on_bad_image="skip"``) are counted
    in ``replaced`` and logged once each.
    """

    def __init__(
        self,
        dataset: Dataset,
        sampler: StepSampler,
        *,
        rank: int,
        world_size: int,
        batch_per_gpu: int,
        rounds: int,
        stop_step: int,
        num_workers: int = 0,
        prefetch_factor: int | None = None,
        device: torch.device | None = None,
        log: Callable[[str], None] = print,
    ):
        check_loader_options(num_workers, prefetch_factor)
        self.dataset, self.sampler = dataset, sampler
        self.rank, self.world_size = rank, world_size
        self.b, self.rounds, self.stop_step = batch_per_gpu, rounds, stop_step
        self.offset = rank * (sampler.batch_size // world_size)  # rank's first batch position
        self.num_workers, self.prefetch_factor = num_workers, prefetch_factor
        self.device = device or torch.device("cpu")
        self.log = log
        self.replaced: dict[int, int] = {}  # index -> the index read in its place
        self._rows = _Rows(dataset)
        self._iter: Iterator[Any] | None = None
        self._next: tuple[int, int] | None = None

    def _open(self, step: int, first: int) -> None:
        start_round = (first - self.offset) // self.b
        batches = StepBatches(
            self.sampler,
            step,
            max(self.stop_step, step + 1),
            self.rank,
            self.world_size,
            self.b,
            self.rounds,
            start_round,
        )
        options: dict[str, Any] = {}
        if self.num_workers:
            options = {"prefetch_factor": self.prefetch_factor or 2}
        loader = DataLoader(
            _Rows(self.dataset),
            batch_sampler=batches,
            num_workers=self.num_workers,
            collate_fn=_as_batch,
            pin_memory=self.device.type == "cuda",
            **options,
        )
        self._iter = iter(loader)
        self._next = (step, first)

    def batch(self, indices: Tensor, step: int, first: int) -> Tensor:
        """The rows ``indices`` of update ``step`` (global batch positions from ``first``), on
        the training device."""
        if self.num_workers == 0:  # read here: no DataLoader, no second pass over the order
            idx = indices.cpu()
            _, x, used = self._rows.__getitems__(idx.tolist())
            if not torch.equal(used, idx):
                self._count_replaced(idx, used)
            return x.to(self.device, non_blocking=self.device.type == "cuda")
        if self._iter is None or self._next != (step, first):
            self._open(step, first)
        assert self._iter is not None
        try:
            idx, x, used = next(self._iter)
        except StopIteration:  # past stop_step (a run extended in place): read on from here
            self._open(step, first)
            idx, x, used = next(self._iter)
        if not torch.equal(idx, indices.cpu()):
            raise RuntimeError(f"the data stream is out of step at update {step}")
        last = first + self.b >= self.offset + self.b * self.rounds
        self._next = (step + 1, self.offset) if last else (step, first + self.b)
        if last and step + 1 >= self.stop_step:
            self.close()  # the final micro-batch: the workers have nothing left to read
        if not torch.equal(used, idx):
            self._count_replaced(idx, used)
        return x.to(self.device, non_blocking=self.device.type == "cuda")

    def _count_replaced(self, idx: Tensor, used: Tensor) -> None:
        files = getattr(self.dataset, "files", None)
        for i, j in zip(idx.tolist(), used.tolist()):
            if i != j and i not in self.replaced:
                self.replaced[i] = j
                name = f" ({files[i]})" if files is not None else ""
                self.log(
                    f"replaced example {i}{name}, which failed to decode, by example {j}; "
                    f"{len(self.replaced)} replaced so far"
                )

    def close(self) -> None:
        """Stop the workers (the iterator shuts them down when it is dropped); a later
        :meth:`batch` starts a new one."""
        shutdown = getattr(self._iter, "_shutdown_workers", None)
        if callable(shutdown):
            shutdown()
        self._iter, self._next = None, None


__all__ = [
    "StepBatches",
    "StreamFeed",
    "check_loader_options",
    "dataset_fingerprint",
    "describe_data",
    "position_change",
    "sample_shape",
    "stream_position",
]


def data_fingerprint(data: Tensor | Dataset) -> str:
    """sha256 of a tensor's bytes, or a Dataset's cheap fingerprint (its manifest's, sampled
    rows: :func:`~.loader.dataset_fingerprint`), to detect a different data set on resume."""
    if not isinstance(data, Tensor):
        return dataset_fingerprint(data)
    raw = data.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()
    return hashlib.sha256(raw).hexdigest()


def check_data(data: Tensor | Dataset, labels: Tensor | None, integer: bool = False) -> None:
    """``integer``: the objective declares ``integer_data = True`` (token ids, int64 rows).
    A Dataset must be map-style (``len`` and indexing; not an IterableDataset)."""
    if isinstance(data, Dataset) and not isinstance(data, Tensor):
        if not hasattr(data, "__len__") or isinstance(data, torch.utils.data.IterableDataset):
            raise UserError(
                f"data must be a map-style Dataset (len and indexing: the trainer reads rows by "
                f"index), got {type(data).__name__}"
            )
        if integer:
            raise UserError("an objective over token ids (integer_data) takes an int64 tensor")
        n = len(data)
        if labels is not None and (not isinstance(labels, Tensor) or labels.shape[:1] != (n,)):
            got = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
            raise UserError(f"labels must be a tensor with {n} rows, got {got}")
        return
    if integer:
        if not isinstance(data, Tensor) or data.ndim < 2 or data.dtype != torch.long:
            got = tuple(data.shape) if isinstance(data, Tensor) else type(data).__name__
            raise UserError(f"data must be an int64 tensor of shape (N, ...), got {got}")
    elif not isinstance(data, Tensor) or data.ndim < 2 or not data.is_floating_point():
        got = tuple(data.shape) if isinstance(data, Tensor) else type(data).__name__
        raise UserError(f"data must be a floating tensor of shape (N, ...), got {got}")
    bad_labels = not isinstance(labels, Tensor) or labels.shape[:1] != data.shape[:1]
    if labels is not None and bad_labels:
        got = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise UserError(f"labels must be a tensor with {data.shape[0]} rows, got {got}")
