"""A sharded on-disk format for large training sets: safetensors shards and a JSON manifest.

Why safetensors and not WebDataset tar shards: the trainer's data order is stateless (the
examples of update ``step`` are a pure function of (seed, step), ``train/sampler.py``), so the
reader must fetch any example by its index. A safetensors file is a JSON header followed by raw
tensor bytes at known offsets, so row ``i`` of a shard is one memory-mapped read; a tar shard
can only be read from its start (WebDataset streams it sequentially and shuffles in a buffer),
which would make the order depend on the reader's state and resume approximate.

Layout of a shard folder::

    manifest.json              format, version, name, n, shape, dtype, normalizer, classes,
                               the shards (file, start, stop, bytes, sha256 of the contents),
                               fingerprint (sha256 of the shards' sha256s), source, encoder
    shard-00000.safetensors    "x": rows [start, stop) as stored (float32, float16 or uint8),
                               "labels": their int64 labels (when the set has labels);
                               header metadata: format, version, dataset, pack_id, index,
                               start, stop, sha256

Stored values are raw; ``normalizer`` maps them to model space (uint8 images store intensities
x 255 with the range map [0, 255] -> [-1, 1]). Every shard is checked against the manifest when
it is first opened (its header only: cheap); a shard copied from another data set or written by
another version is refused with a message naming the shard and the field that differs.
:func:`verify_shards` also re-hashes every byte.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import Tensor

from ..errors import MissingFileError, UserError
from .stats import Normalizer
from .streaming import StreamingDataset, TensorStream

FORMAT = "interpolant-shards"
VERSION = 1
MANIFEST = "manifest.json"
DTYPES = ("float32", "float16", "uint8")
# safetensors dtype names -> numpy
_NP = {"F32": np.float32, "F16": np.float16, "U8": np.uint8, "I64": np.int64}


class ShardError(UserError):
    """A shard that does not belong to the manifest (another data set, version or a damaged
    file); the message names the shard and the field."""


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.safetensors"


def _content_sha(x: Tensor, labels: Tensor | None) -> str:
    sha = hashlib.sha256(x.contiguous().view(torch.uint8).numpy().tobytes())
    if labels is not None:
        sha.update(labels.contiguous().numpy().tobytes())
    return sha.hexdigest()


def _read_header(path: Path) -> tuple[dict[str, Any], int]:
    """The safetensors JSON header of ``path`` and the byte offset where its data start."""
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if not 0 < size < 100_000_000:
                raise ValueError(f"header length {size}")
            header = json.loads(f.read(size))
    except (OSError, ValueError) as err:
        raise ShardError(f"{path}: not a safetensors shard ({err})") from None
    return header, 8 + size


# ----------------------------------------------------------------------------- writing


def _to_stored(x: Tensor, dtype: str, normalizer: Normalizer) -> Tensor:
    """Model-space float32 rows as stored: float32/float16 as they are, uint8 as round(255 u)
    of the intensities u in [0, 1] that ``normalizer`` maps to model space."""
    if dtype == "uint8":
        return (normalizer.inverse(x).double() * 255).round().clamp(0, 255).to(torch.uint8)
    return x.to(getattr(torch, dtype))


def write_shards(
    source: StreamingDataset | Tensor,
    out: str | Path,
    shard_size: int = 4096,
    *,
    labels: Tensor | None = None,
    name: str | None = None,
    dtype: str = "float32",
    encoder: Callable[[Tensor], Tensor] | None = None,
    encoder_info: dict[str, Any] | None = None,
    batch_size: int = 256,
    progress: bool = True,
) -> Path:
    """Write ``source`` (a reader or an (N, ...) tensor in model space) as shards in ``out``.

    ``encoder`` (a callable on model-space batches, e.g. a VAE's encoder) is applied under
    ``no_grad`` and the shards hold its outputs (latents) with an identity normalizer.
    ``dtype="uint8"`` needs pixel data whose normalizer is the range map of [0, 1] (an image
    folder). Rows are written in order; ``out`` must not exist or be empty. Returns ``out``.
    """
    if dtype not in DTYPES:
        raise UserError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if shard_size < 1 or batch_size < 1:
        raise UserError(f"shard_size and batch_size must be >= 1, got {shard_size}, {batch_size}")
    if isinstance(source, Tensor):
        source = TensorStream(source, labels)
    n = len(source)
    if n < 1:
        raise UserError("nothing to pack: the source has no samples")
    normalizer = source.normalizer
    labels = source.labels if labels is None else labels
    if labels is not None and labels.shape != (n,):
        raise UserError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
    if encoder is not None:
        if dtype == "uint8":
            raise UserError("latents are stored as float32 or float16, not uint8")
        normalizer = Normalizer.identity()
    elif dtype == "uint8" and normalizer != Normalizer.from_range(0.0, 1.0):
        raise UserError("dtype='uint8' stores image intensities: use it for image folders only")
    stored_norm = Normalizer.from_range(0.0, 255.0) if dtype == "uint8" else normalizer
    root = Path(out)
    if root.exists() and any(root.iterdir()):
        raise UserError(f"{root} exists and is not empty: choose a new --out folder")
    root.mkdir(parents=True, exist_ok=True)
    src_name = name or source.name
    # Identifies this pack (source and options): shards of another pack are refused.
    identity = [src_name, source.fingerprint(), shard_size, dtype, encoder_info]
    pack_id = hashlib.sha256(json.dumps(identity, default=str).encode()).hexdigest()[:16]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc="pack", unit="img", dynamic_ncols=True)
    shards: list[dict[str, Any]] = []
    shape: list[int] | None = None
    for index, start in enumerate(range(0, n, shard_size)):
        stop = min(start + shard_size, n)
        parts = []
        for a in range(start, stop, batch_size):
            rows = np.arange(a, min(a + batch_size, stop))
            x = source.fetch(rows)[0]
            if encoder is not None:
                with torch.no_grad():
                    x = encoder(x).float().cpu()
            parts.append(_to_stored(x, dtype, normalizer))
            if bar is not None:
                bar.update(len(rows))
        x_shard = torch.cat(parts)
        shape = list(x_shard.shape[1:])
        y_shard = None if labels is None else labels[start:stop].long().contiguous()
        sha = _content_sha(x_shard, y_shard)
        meta = {
            "format": FORMAT,
            "version": str(VERSION),
            "dataset": src_name,
            "pack_id": pack_id,
            "index": str(index),
            "start": str(start),
            "stop": str(stop),
            "sha256": sha,
        }
        tensors = {"x": x_shard.contiguous()}
        if y_shard is not None:
            tensors["labels"] = y_shard
        path = root / shard_name(index)
        tmp = path.with_name(f".{path.name}.tmp")
        save_file(tensors, str(tmp), meta)
        os.replace(tmp, path)
        shards.append(
            {"file": path.name, "start": start, "stop": stop,
             "bytes": path.stat().st_size, "sha256": sha}
        )  # fmt: skip
    if bar is not None:
        bar.close()
    fingerprint = hashlib.sha256("".join(s["sha256"] for s in shards).encode()).hexdigest()
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "name": src_name,
        "pack_id": pack_id,
        "n": n,
        "shape": shape,
        "dtype": dtype,
        "has_labels": labels is not None,
        "classes": source.classes,
        "normalizer": stored_norm.to_dict(),
        "shards": shards,
        "fingerprint": fingerprint,
        "source": source.source,
        "encoder": encoder_info,
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return root


# ----------------------------------------------------------------------------- reading


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of a shard folder, its format and version checked."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise MissingFileError(f"{folder} is not a shard folder (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ShardError(f"{path}: not valid JSON ({err})") from None
    if manifest.get("format") != FORMAT:
        raise ShardError(f"{path}: field 'format' is {manifest.get('format')!r}, not {FORMAT!r}")
    if manifest.get("version") != VERSION:
        raise ShardError(
            f"{path}: field 'version' is {manifest.get('version')!r}; this interpolant reads "
            f"version {VERSION} (re-pack the data with interpolant data pack)"
        )
    for key in ("n", "shape", "dtype", "normalizer", "shards", "fingerprint", "name", "pack_id"):
        if key not in manifest:
            raise ShardError(f"{path}: field {key!r} is missing")
    return manifest


class ShardStream(StreamingDataset):
    """Rows of a shard folder written by :func:`write_shards` (memory-mapped per shard)."""

    kind = "shards"

    def __init__(self, folder: str | Path):
        self.root = Path(folder)
        self.manifest = m = read_manifest(self.root)
        self.name, self.source = str(m["name"]), str(self.root)
        self.sample_shape = tuple(int(s) for s in m["shape"])
        self.normalizer = Normalizer.from_dict(m["normalizer"])
        self.classes = m.get("classes")
        self.starts = [int(s["start"]) for s in m["shards"]]
        self.n = int(m["n"])
        if not self.starts or self.starts[0] != 0 or int(m["shards"][-1]["stop"]) != self.n:
            raise ShardError(f"{self.root / MANIFEST}: the shards do not cover rows 0..{self.n}")
        labels = []
        for k in range(len(self.starts)):
            self._shard(k)  # every header is checked now, so a foreign shard fails early
            if m.get("has_labels"):
                labels.append(torch.from_numpy(np.array(self._shard(k)["labels"])))
        self.labels = torch.cat(labels).long() if labels else None

    def __len__(self) -> int:
        return self.n

    def _shard(self, k: int) -> dict[str, np.ndarray]:
        """Shard ``k``'s tensors as memory maps, opened once per process and checked."""
        cache: dict[int, dict[str, np.ndarray]] = self.__dict__.setdefault("_open_shards", {})
        if k in cache:
            return cache[k]
        entry = self.manifest["shards"][k]
        path = self.root / entry["file"]
        if not path.is_file():
            raise ShardError(f"shard {path} listed in {MANIFEST} is missing")
        header, data_start = _read_header(path)
        meta = header.get("__metadata__") or {}
        expected = {
            "format": FORMAT,
            "version": str(VERSION),
            "dataset": self.manifest["name"],
            "pack_id": self.manifest["pack_id"],
            "index": str(k),
            "start": str(entry["start"]),
            "stop": str(entry["stop"]),
            "sha256": entry["sha256"],
        }
        for field, value in expected.items():
            if meta.get(field) != value:
                raise ShardError(
                    f"shard {path}: field {field!r} is {meta.get(field)!r}, the manifest says "
                    f"{value!r} (a shard of another data set or version? re-pack the folder)"
                )
        if path.stat().st_size != entry["bytes"]:
            raise ShardError(
                f"shard {path}: {path.stat().st_size} bytes, the manifest says {entry['bytes']}"
            )
        maps: dict[str, np.ndarray] = {}
        for key in ("x", "labels"):
            if key not in header:
                continue
            spec = header[key]
            offset = spec["data_offsets"][0]
            maps[key] = np.memmap(
                path, _NP[spec["dtype"]], "r", data_start + offset, tuple(spec["shape"])
            )
        rows = int(entry["stop"]) - int(entry["start"])
        if "x" not in maps or maps["x"].shape != (rows, *self.sample_shape):
            got = maps["x"].shape if "x" in maps else None
            raise ShardError(
                f"shard {path}: field 'x' has shape {got}, the manifest says "
                f"{(rows, *self.sample_shape)}"
            )
        cache[k] = maps
        return maps

    def _read(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = np.empty((len(idx), *self.sample_shape), dtype=np.float32)
        shard_of = np.searchsorted(self.starts, idx, side="right") - 1
        for k in np.unique(shard_of).tolist():
            mask = shard_of == k
            out[mask] = self._shard(k)["x"][idx[mask] - self.starts[k]]
        return out, idx

    def fingerprint(self) -> str:
        """The manifest's fingerprint (sha256 of the shards' content hashes)."""
        return str(self.manifest["fingerprint"])


def verify_shards(folder: str | Path, progress: bool = False) -> dict[str, Any]:
    """Re-hash every shard's contents against the manifest (reads every byte); returns the
    manifest. Raises :class:`ShardError` naming the first shard that differs."""
    stream = ShardStream(folder)
    for k, entry in enumerate(stream.manifest["shards"]):
        maps = stream._shard(k)
        x = torch.from_numpy(np.array(maps["x"]))
        y = torch.from_numpy(np.array(maps["labels"])) if "labels" in maps else None
        if _content_sha(x, y) != entry["sha256"]:
            raise ShardError(
                f"shard {stream.root / entry['file']}: field 'sha256' of its contents differs "
                "from the manifest (the file was altered or damaged)"
            )
    return stream.manifest


__all__ = [
    "DTYPES",
    "FORMAT",
    "MANIFEST",
    "VERSION",
    "ShardError",
    "ShardStream",
    "read_manifest",
    "verify_shards",
    "write_shards",
]
