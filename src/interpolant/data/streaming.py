"""Data that stays on disk: map-style ``torch.utils.data.Dataset`` readers for training sets
larger than memory.

Each reader maps an index ``i`` to sample ``i`` as float32 in model space, reads only the rows
asked for, and opens its files lazily in every process (so DataLoader workers each get their
own memory map or file handles, and nothing big is pickled to them):

- :class:`ArrayStream`: a ``.npy`` file, or an uncompressed member of a ``.npz``, through a
  memory map (``np.load(mmap_mode="r")``); row ``i`` is read when it is asked for.
- :class:`ImageFolderStream`: a folder of images (or one subfolder per class, whose sorted names
  are the labels 0, 1, ...) decoded on the fly, grey or RGB, optionally resized. An image that
  fails to decode is refused (``on_bad_image="raise"``: a UserError naming the file) or replaced
  by the next index that decodes (``"skip"``: deterministic, and counted in ``replaced``).
- :class:`~.shards.ShardStream` (in ``shards.py``): safetensors shards with a JSON manifest.

Random access by index is what the trainer's stateless data order needs: the examples of update
``step`` are a pure function of (seed, step) (``train/sampler.py``), so a reader that can fetch any
row resumes exactly with nothing but ``step``. Labels are small and held in memory (``labels``).
``fetch(indices)`` reads a batch and also returns the indices actually read (they differ from
the request only where a bad image was replaced). Indexing with a slice, a list or an index
tensor returns a stacked batch, so ``stream[:2000]`` gives a tensor like ``x[:2000]``.
"""

from __future__ import annotations

import hashlib
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import MissingFileError, UserError
from .base import DataInfo, LoadedData
from .files import (
    IMAGE_SUFFIXES,
    _image_files,
    _int_labels,
    _pick_key,
    check_finite,
    decode_image,
    image_size,
)
from .stats import Normalizer

ON_BAD_IMAGE = ("raise", "skip")
#: Rows hashed by the cheap fingerprint of an array (evenly spaced, first and last included).
FINGERPRINT_ROWS = 64


def _as_index(index: Any, n: int) -> np.ndarray:
    """A slice, int sequence, ndarray or tensor of indices as int64 in [0, n)."""
    if isinstance(index, slice):
        return np.arange(n, dtype=np.int64)[index]
    idx = np.asarray(index.cpu() if isinstance(index, Tensor) else index, dtype=np.int64)
    idx = idx.reshape(-1)
    idx = np.where(idx < 0, idx + n, idx)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise IndexError(f"indices out of range for {n} samples: {idx.min()}..{idx.max()}")
    return idx


class StreamingDataset(Dataset[Tensor], ABC):
    """Base of the on-disk readers: subclasses set ``name``, ``source``, ``sample_shape``,
    ``normalizer``, ``labels``, ``classes`` and implement ``__len__``, ``_read`` and
    ``fingerprint``."""

    name: str = ""
    source: str = ""
    kind: str = ""
    sample_shape: tuple[int, ...] = ()
    normalizer: Normalizer = Normalizer.identity()
    labels: Tensor | None = None
    classes: list[str] | None = None

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def _read(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw rows ``idx`` (k, *sample_shape) and the indices actually read."""

    @abstractmethod
    def fingerprint(self) -> str:
        """A sha256 that identifies the data without reading all of it."""

    # --- reading ------------------------------------------------------------------------------
    def fetch(self, indices: Any) -> tuple[Tensor, Tensor]:
        """(float32 batch in model space, int64 indices actually read) of ``indices``."""
        idx = _as_index(indices, len(self))
        raw, used = self._read(idx)
        x = torch.from_numpy(np.ascontiguousarray(raw, dtype=np.float32))
        x = x.reshape(len(idx), *self.sample_shape)
        used_t = torch.from_numpy(np.asarray(used, dtype=np.int64))
        if self.normalizer.kind == "identity":  # (x - 0) / 1 in float64 gives x's own bits
            return x, used_t
        # Normalised as a batch: a per-channel normalizer acts on axis 1 of (N, C, ...).
        return self.normalizer(x), used_t

    def __getitems__(self, indices: list[int]) -> Tensor:
        """Batched read (``torch.utils.data`` calls this instead of ``__getitem__`` per item)."""
        return self.fetch(indices)[0]

    def __getitem__(self, index: Any) -> Tensor:
        """Sample ``index`` (an int), or a stacked batch for a slice, list, array or tensor."""
        if isinstance(index, int | np.integer):
            return self.fetch([int(index)])[0][0]
        if isinstance(index, Tensor) and index.ndim == 0:
            return self.fetch([int(index)])[0][0]
        return self.fetch(index)[0]

    @property
    def shape(self) -> tuple[int, ...]:
        """(N, *sample_shape), as a tensor's ``shape``."""
        return (len(self), *self.sample_shape)

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def to_tensor(self, batch: int = 1024) -> Tensor:
        """Every sample in memory (for small sets, the held-out split, or checks)."""
        n = len(self)
        parts = [self.fetch(np.arange(i, min(i + batch, n)))[0] for i in range(0, n, batch)]
        return torch.cat(parts) if parts else torch.zeros(0, *self.sample_shape)

    def subset(self, indices: Any) -> StreamingDataset:
        """The rows ``indices`` as a reader of their own (nothing is read now)."""
        return SubsetStream(self, _as_index(indices, len(self)))

    def describe(self) -> dict[str, Any]:
        """JSON description stored with checkpoints (kind, source, size, fingerprint)."""
        return {
            "kind": self.kind,
            "source": self.source,
            "n": len(self),
            "shape": list(self.sample_shape),
            "fingerprint": self.fingerprint(),
        }

    def info(self, split: str = "all") -> DataInfo:
        """The :class:`~.base.DataInfo` of the set."""
        return DataInfo(
            name=self.name,
            shape=tuple(self.sample_shape),
            n=len(self),
            split=split,
            normalizer=self.normalizer,
            classes=self.classes,
            source=self.source,
            extra={"stream": self.describe()},
        )

    def loaded(self, split: str = "all") -> LoadedData:
        """As ``LoadedData``: ``x`` is this reader (it stands where a tensor would; the trainer
        reads it through a DataLoader)."""
        return LoadedData(cast(Tensor, self), self.labels, self.info(split))

    # Open files and memory maps stay in the process that opened them.
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_open")}


class SubsetStream(StreamingDataset):
    """Rows ``indices`` of another reader (a hold-out split, a random subset)."""

    def __init__(self, base: StreamingDataset, indices: np.ndarray):
        self.base, self.indices = base, np.asarray(indices, dtype=np.int64)
        self.name, self.source, self.kind = base.name, base.source, base.kind
        self.sample_shape, self.normalizer, self.classes = (
            base.sample_shape,
            base.normalizer,
            base.classes,
        )
        self.labels = None if base.labels is None else base.labels[torch.from_numpy(self.indices)]

    def __len__(self) -> int:
        return int(self.indices.size)

    def _read(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        wanted = self.indices[idx]
        raw, used = self.base._read(wanted)
        if np.array_equal(used, wanted):
            return raw, idx
        # A replaced image: map the base's index back to a position in this subset (-1 when
        # the replacement lies outside it).
        where = self.__dict__.setdefault(
            "_open_where", {int(j): i for i, j in enumerate(self.indices)}
        )
        return raw, np.array([where.get(int(u), -1) for u in used], dtype=np.int64)

    def fingerprint(self) -> str:
        sha = hashlib.sha256(self.base.fingerprint().encode())
        sha.update(self.indices.tobytes())
        return sha.hexdigest()


class TensorStream(StreamingDataset):
    """An in-memory (N, ...) tensor in model space behind the reader interface (to pack a
    tensor into shards, or to compare the two data paths on the same rows)."""

    kind = "tensor"

    def __init__(self, x: Tensor, labels: Tensor | None = None, name: str = "tensor"):
        if not isinstance(x, Tensor) or x.ndim < 2:
            raise UserError(f"x must be a tensor of shape (N, ...), got {type(x).__name__}")
        self.x = x.detach().cpu().float().contiguous()
        self.labels, self.name, self.source = labels, name, f"tensor {tuple(x.shape)}"
        self.sample_shape = tuple(int(s) for s in x.shape[1:])

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def _read(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.x[torch.from_numpy(idx)].numpy(), idx

    def fingerprint(self) -> str:
        return hashlib.sha256(self.x.view(torch.uint8).numpy().tobytes()).hexdigest()


# ----------------------------------------------------------------------------- arrays


def _npz_member(path: Path, key: str) -> tuple[int, np.dtype, tuple[int, ...], bool]:
    """(byte offset, dtype, shape, fortran order) of the array ``key`` stored in ``path``; only
    members stored without compression (``np.savez``) can be memory-mapped."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(f"{key}.npy")
        if info.compress_type != zipfile.ZIP_STORED:
            raise UserError(
                f"{path.name}: array {key!r} is compressed (np.savez_compressed) and cannot be "
                "memory-mapped; save it with np.savez or np.save, or pack it into shards "
                "(interpolant data pack)"
            )
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)  # the zip local file header: name and extra lengths at 26 and 28
        start = info.header_offset + 30 + int.from_bytes(local[26:28], "little")
        start += int.from_bytes(local[28:30], "little")
        f.seek(start)
        version = np.lib.format.read_magic(f)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read_header(f)
        return f.tell(), dtype, tuple(shape), fortran


class ArrayStream(StreamingDataset):
    """Rows of a ``.npy`` file (or an uncompressed ``.npz`` member) through a memory map.

    ``key``/``labels_key`` pick the arrays of a ``.npz`` as :func:`~.files.load_array` does; the
    labels (small) are read into memory. ``normalizer`` maps raw values to model space (default:
    identity; a fitted one needs a pass over the data: fit it on a sample, or pack shards).
    ``rows_read`` counts the rows this process has read (the memory map reads nothing else).
    """

    kind = "array"

    def __init__(
        self,
        path: str | Path,
        key: str | None = None,
        labels_key: str | None = None,
        normalizer: Normalizer | None = None,
    ):
        p = Path(path)
        if not p.is_file():
            raise MissingFileError(f"path must be an existing .npy/.npz file, got {str(path)!r}")
        suffix = p.suffix.lower()
        if suffix not in (".npy", ".npz"):
            raise UserError(f"path must end in .npy or .npz, got {p.name!r}")
        self.path, self.key, self.labels_key = p, key, labels_key
        self.name, self.source = p.stem, str(p)
        self.normalizer = normalizer or Normalizer.identity()
        self.rows_read = 0
        arr = self._array()
        if arr.dtype.kind not in "biuf":
            raise UserError(f"{p.name}: array must be numeric, got dtype {arr.dtype}")
        if arr.ndim == 0 or arr.shape[0] == 0:
            raise UserError(
                f"{p.name}: array must have shape (N, ...) with N >= 1, got {arr.shape}"
            )
        self.n = int(arr.shape[0])
        self.sample_shape = tuple(int(s) for s in arr.shape[1:]) or (1,)
        if labels_key is not None:
            if suffix == ".npy":
                raise UserError(f"{p.name}: a .npy file holds one array; labels_key needs a .npz")
            with np.load(p, allow_pickle=False) as z:
                raw = z[_pick_key(list(z.files), labels_key, p.name)]
            try:
                self.labels, self.classes = _int_labels(raw, self.n, f"{p.name}[{labels_key!r}]")
            except ValueError as err:
                raise UserError(str(err)) from None

    def _array(self) -> np.ndarray:
        arr = self.__dict__.get("_open_array")
        if arr is None:
            if self.path.suffix.lower() == ".npy":
                arr = np.load(self.path, mmap_mode="r", allow_pickle=False)
            else:
                with np.load(self.path, allow_pickle=False) as z:
                    key = _pick_key(list(z.files), self.key, self.path.name)
                offset, dtype, shape, fortran = _npz_member(self.path, key)
                order = "F" if fortran else "C"
                arr = np.memmap(self.path, dtype, "r", offset, shape, cast(Any, order))
            self.__dict__["_open_array"] = arr
        return arr

    def __len__(self) -> int:
        return self.n

    def _read(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = np.asarray(self._array()[idx])
        self.rows_read += int(idx.size)
        try:
            check_finite(rows.reshape(len(idx), -1), self.path.name, row_names=idx.tolist())
        except ValueError as err:
            raise UserError(f"{err} (rows counted from 0)") from None
        return rows, idx

    def fingerprint(self) -> str:
        """sha256 of the shape, dtype and ``FINGERPRINT_ROWS`` evenly spaced rows: cheap (the
        whole file is never read) and it changes when the data set does."""
        arr = self._array()
        sha = hashlib.sha256(f"{arr.shape}|{arr.dtype}|{self.key}".encode())
        rows = np.unique(np.linspace(0, self.n - 1, FINGERPRINT_ROWS).round().astype(np.int64))
        sha.update(np.ascontiguousarray(arr[rows]).tobytes())
        return sha.hexdigest()


# ----------------------------------------------------------------------------- images


class ImageFolderStream(StreamingDataset):
    """A folder of images decoded on the fly, as (channels, H, W) in [-1, 1].

    The layout is that of :func:`~.files.load_image_folder` (images in the folder, or one
    subfolder per class) and each image decodes to the same values. Without ``size`` every image
    must have the first image's size. ``on_bad_image``: "raise" refuses an undecodable file with
    a UserError naming it; "skip" reads the next index that decodes instead (so the batch keeps
    its size and the choice does not depend on workers or order) and records the file in
    ``replaced`` ({index: path}, this process's count).
    """

    kind = "image-folder"

    def __init__(
        self,
        folder: str | Path,
        channels: int = 3,
        size: int | tuple[int, int] | None = None,
        backend: str = "auto",
        on_bad_image: str = "raise",
    ):
        root = Path(folder)
        if not root.is_dir():
            raise MissingFileError(f"folder must be a directory of images, got {str(folder)!r}")
        if on_bad_image not in ON_BAD_IMAGE:
            raise UserError(f"on_bad_image must be one of {ON_BAD_IMAGE}, got {on_bad_image!r}")
        if channels not in (1, 3):
            raise UserError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
        try:
            files, labels, classes = _image_files(root)
        except ValueError as err:
            raise UserError(str(err)) from None
        self.root, self.files, self.classes = root, files, classes
        self.labels = None if labels is None else torch.tensor(labels, dtype=torch.long)
        self.channels, self.backend, self.on_bad_image = channels, backend, on_bad_image
        self.name, self.source = root.name, str(root)
        self.normalizer = Normalizer.from_range(0.0, 1.0)
        self.replaced: dict[int, str] = {}
        try:
            self.resize = self.hw = image_size(size)
        except ValueError as err:
            raise UserError(str(err)) from None
        if self.hw is None:  # the first image that decodes fixes the size
            first, _ = self._decode_or_next(0)
            self.hw = (int(first.shape[1]), int(first.shape[2]))
            self.replaced.clear()
        self.sample_shape = (channels, *self.hw)

    def __len__(self) -> int:
        return len(self.files)

    def _decode(self, i: int) -> Tensor:
        path = self.files[i]
        try:
            img = decode_image(path, self.channels, self.resize, self.backend)
        except (OSError, SyntaxError, ValueError) as err:  # what Pillow / matplotlib raise
            if self.on_bad_image == "raise":
                raise UserError(
                    f"cannot decode image {path} ({type(err).__name__}: {err}); fix or remove "
                    "it, or set on_bad_image='skip' to replace it by the next image"
                ) from None
            raise _BadImage(str(path)) from err
        if self.hw is not None and tuple(img.shape[1:]) != self.hw:
            raise UserError(
                f"images differ in size: {path} is {tuple(img.shape[1:])} (H, W), the first is "
                f"{self.hw}; pass size=(H, W) to resize them"
            )
        return img

    def _decode_or_next(self, i: int) -> tuple[Tensor, int]:
        n = len(self.files)
        for k in range(n):
            j = (i + k) % n
            try:
                return self._decode(j), j
            except _BadImage as bad:
                self.replaced[j] = bad.args[0]
        raise UserError(f"{self.root}: none of the {n} images decodes")

    def _read(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images, used = [], []
        for i in idx.tolist():
            img, j = self._decode_or_next(int(i))
            images.append(img.float().numpy())
            used.append(j)
        return np.stack(images), np.asarray(used, dtype=np.int64)

    def fingerprint(self) -> str:
        """sha256 of the relative file names, their byte sizes and the decoding options."""
        sha = hashlib.sha256(f"{self.channels}|{self.resize}".encode())
        for path in self.files:
            sha.update(f"{path.relative_to(self.root)}|{path.stat().st_size}\n".encode())
        return sha.hexdigest()


class _BadImage(Exception):
    """An image that failed to decode (with on_bad_image='skip'); args[0] is its path."""


# ----------------------------------------------------------------------------- dispatch


def open_stream(path: str | Path, **options: Any) -> StreamingDataset:
    """The reader for ``path``: a shard folder (it holds ``manifest.json``), a folder of images,
    or a ``.npy``/``.npz`` file; ``options`` go to its constructor."""
    from .shards import MANIFEST, ShardStream

    p = Path(path)
    try:
        if p.is_dir() and (p / MANIFEST).is_file():
            return ShardStream(p, **options)
        if p.is_dir():
            return ImageFolderStream(p, **options)
        if p.suffix.lower() in (".npy", ".npz"):
            return ArrayStream(p, **options)
    except TypeError as err:  # an option this reader does not take
        raise UserError(f"{p}: {err}") from None
    if not p.exists():
        raise MissingFileError(f"no such file or folder: {str(path)!r}")
    raise UserError(
        f"cannot stream {p.name!r}: expected a shard folder (manifest.json), a folder of images "
        f"({', '.join(IMAGE_SUFFIXES)}) or a .npy/.npz file"
    )


def is_stream(data: Any) -> bool:
    """Whether ``data`` is one of these readers (rather than a tensor)."""
    return isinstance(data, StreamingDataset)


def in_memory(data: Tensor | StreamingDataset) -> Tensor:
    """``data`` as a tensor: a reader of on-disk data is read whole (for the commands that need
    every example at once: analysis, Gaussian teleportation, grid search)."""
    return data.to_tensor() if isinstance(data, StreamingDataset) else data


def stream_rows(data: Tensor | StreamingDataset, index: Sequence[int] | np.ndarray) -> Tensor:
    """Rows ``index`` of a tensor or a reader, as a tensor."""
    if isinstance(data, StreamingDataset):
        return data.fetch(index)[0]
    return data[torch.as_tensor(np.asarray(index), dtype=torch.long)]


__all__ = [
    "ON_BAD_IMAGE",
    "ArrayStream",
    "ImageFolderStream",
    "StreamingDataset",
    "SubsetStream",
    "TensorStream",
    "in_memory",
    "is_stream",
    "open_stream",
    "stream_rows",
]
