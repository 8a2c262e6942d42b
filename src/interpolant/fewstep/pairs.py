"""(noise, teacher ODE endpoint) pairs: the data of reflow and of one-step distillation.

``make_pairs(teacher, n, sampler, shape=...)`` draws eps_i from the per-sample stream
``("pairs-noise", seed, i)`` and solves the teacher's ODE from t = 1 to t = 0 with any
:class:`~interpolant.solvers.Sampler`, giving the deterministic coupling (x0_i, eps_i) of
Liu et al. 2023 (rectified flow, Sec. 2.2) and SlimFlow (Sec. 3.2). With ``directory`` the
pairs are written in chunks (``chunk-00000.safetensors``, ...) next to ``pairs.json``, which
records the teacher's hash (:func:`~interpolant.fewstep.teacher.teacher_hash`), the sampler,
the seed, n and the chunk size; a second call resumes from the last complete chunk, and a
directory written for another teacher, sampler or seed is refused.

**Class-conditional pairs.** With ``labels`` (n,) the teacher solves pair i's ODE with
``class_labels = labels[i]`` (``label_key``); the chunk files store the labels next to x0 and
eps, and ``pairs.json`` records their sha256, so a directory made with other labels is refused
like one from another teacher. ``Pairs.labels`` goes to the trainer as its ``labels`` (the
student is then trained with ``cond = {label_key: labels}``).

For the trainer, a pair is one row ``stack([x0, eps])`` of shape (2, ...)
(:func:`pair_rows` / :func:`split_rows`), so the stock :class:`~interpolant.train.Trainer`
shuffles, shards and resumes pairs like any data set.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import MissingFileError, UserError
from ..predictions import Model
from ..randomness import normal
from ..solvers import Sampler, sample
from .teacher import teacher_hash

MANIFEST = "pairs.json"
NOISE_STREAM = "pairs-noise"


@dataclass
class Pairs:
    """n pairs: ``x0`` the teacher's endpoint at t = 0 (data side), ``eps`` the source draw at
    t = 1, the teacher's hash and the sampler's config."""

    x0: Tensor
    eps: Tensor
    teacher: str
    sampler: dict[str, Any]
    labels: Tensor | None = None

    def rows(self) -> Tensor:
        """The trainer's data: (n, 2, ...) rows stack([x0, eps])."""
        return pair_rows(self.x0, self.eps)

    def __len__(self) -> int:
        return int(self.x0.shape[0])


def pair_rows(x0: Tensor, eps: Tensor) -> Tensor:
    """Rows (n, 2, ...) holding each pair (x0_i, eps_i)."""
    if x0.shape != eps.shape:
        raise UserError(f"pairs need x0 and eps of one shape, got {x0.shape} and {eps.shape}")
    return torch.stack([x0, eps], dim=1)


def split_rows(rows: Tensor) -> tuple[Tensor, Tensor]:
    """(x0, eps) from rows made by :func:`pair_rows`."""
    if rows.ndim < 2 or rows.shape[1] != 2:
        raise UserError(
            f"pair rows must have shape (batch, 2, ...) (x0 and eps stacked), got "
            f"{tuple(rows.shape)}: train this objective on Pairs.rows(), not on plain data"
        )
    return rows[:, 0], rows[:, 1]


def make_pairs(
    teacher: Model,
    n: int,
    sampler: Sampler,
    *,
    shape: tuple[int, ...],
    seed: int = 0,
    directory: str | Path | None = None,
    chunk: int = 1024,
    batch_size: int = 512,
    cond: dict[str, Any] | None = None,
    labels: Tensor | None = None,
    label_key: str = "class_labels",
    progress: bool = False,
) -> Pairs:
    """n (x0, eps) pairs of ``teacher`` sampled with ``sampler`` (see the module docstring);
    ``cond`` is passed to every teacher call, ``labels`` (n,) per pair as ``label_key``.

    Sample i's noise is its own stream, so pairs do not depend on ``chunk`` or ``batch_size``.
    """
    if not isinstance(teacher, Model):
        raise UserError(f"teacher must be an interpolant Model, got {type(teacher).__name__}")
    if not (isinstance(n, int) and n >= 1) or not (isinstance(chunk, int) and chunk >= 1):
        raise UserError(f"n and chunk must be positive integers, got n={n!r}, chunk={chunk!r}")
    if not isinstance(sampler, Sampler):
        raise UserError(f"sampler must be a Sampler spec, got {type(sampler).__name__}")
    if labels is not None:
        labels = _check_labels(labels, n)
        if label_key in (cond or {}):
            raise UserError(f"{label_key!r} is given both in cond and as labels: give it once")
    digest = teacher_hash(teacher)
    manifest = {
        "teacher": digest,
        "sampler": sampler.config(),
        "seed": int(seed),
        "n": n,
        "chunk": chunk,
        "shape": list(shape),
        "labels": None if labels is None else labels_hash(labels),
    }
    root = Path(directory) if directory is not None else None
    if root is not None:
        _open_directory(root, manifest)
    parts_x0, parts_eps, parts_y = [], [], []
    starts = range(0, n, chunk)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="teacher pairs")
    for k, start in enumerate(starts):
        stop = min(n, start + chunk)
        file = None if root is None else root / f"chunk-{k:05d}.safetensors"
        y = None if labels is None else labels[start:stop]
        loaded = _read_chunk(file, stop - start) if file is not None else None
        if loaded is None:
            settings = (sampler, shape, seed, batch_size, cond, y, label_key)
            loaded = (*_solve_chunk(teacher, start, stop, *settings), y)
            if file is not None:
                _write_chunk(file, *loaded)
        elif y is not None and (loaded[2] is None or not torch.equal(loaded[2], y)):
            raise UserError(f"{file} holds other labels than pairs {start}..{stop - 1} were given")
        parts_x0.append(loaded[0])
        parts_eps.append(loaded[1])
        parts_y.append(loaded[2])
        if bar is not None:
            bar.update(stop - start)
    if bar is not None:
        bar.close()
    y_all = None if labels is None else torch.cat([p for p in parts_y if p is not None])
    return Pairs(torch.cat(parts_x0), torch.cat(parts_eps), digest, sampler.config(), y_all)


def labels_hash(labels: Tensor) -> str:
    """sha256 of (n,) int64 labels (what ``pairs.json`` records)."""
    data = labels.detach().cpu().to(torch.int64).contiguous()
    return hashlib.sha256(data.view(torch.uint8).numpy().tobytes()).hexdigest()


def _check_labels(labels: Tensor, n: int) -> Tensor:
    if not isinstance(labels, Tensor) or labels.shape != (n,) or labels.is_floating_point():
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise UserError(f"labels must be an (n,) = ({n},) integer tensor, got {shape}")
    return labels.detach().cpu().to(torch.int64)


def load_pairs(directory: str | Path, teacher: Model | None = None) -> Pairs:
    """The complete pairs of ``directory``; with ``teacher``, refused unless its hash matches."""
    root = Path(directory)
    if not (root / MANIFEST).is_file():
        raise MissingFileError(f"no pairs at {str(root)!r} (no {MANIFEST}); run make_pairs first")
    manifest = json.loads((root / MANIFEST).read_text())
    if teacher is not None:
        _check_teacher(root, manifest, teacher_hash(teacher))
    n, chunk = int(manifest["n"]), int(manifest["chunk"])
    parts = []
    for k, start in enumerate(range(0, n, chunk)):
        got = _read_chunk(root / f"chunk-{k:05d}.safetensors", min(n, start + chunk) - start)
        if got is None:
            raise UserError(
                f"pairs in {str(root)!r} are incomplete (chunk {k} missing): call make_pairs "
                "with the same teacher, sampler and seed to finish them"
            )
        parts.append(got)
    x0 = torch.cat([p[0] for p in parts])
    eps = torch.cat([p[1] for p in parts])
    labels = None
    if manifest.get("labels") is not None:
        labels = torch.cat([p[2] for p in parts if p[2] is not None])
        if labels.shape[0] != n or labels_hash(labels) != manifest["labels"]:
            raise UserError(f"the labels stored in {str(root)!r} do not match its {MANIFEST}")
    return Pairs(x0, eps, manifest["teacher"], manifest["sampler"], labels)


# ----------------------------------------------------------------------------------------------


def _solve_chunk(
    teacher: Model,
    start: int,
    stop: int,
    sampler: Sampler,
    shape: tuple[int, ...],
    seed: int,
    batch_size: int,
    cond: dict[str, Any] | None,
    labels: Tensor | None,
    label_key: str,
) -> tuple[Tensor, Tensor]:
    """Pairs start..stop-1; ``labels`` are this chunk's (row 0 is pair ``start``)."""
    first: Tensor | None = next(iter(teacher.parameters()), None)
    if first is None:
        first = next(iter(teacher.buffers()), None)
    where = first.device if first is not None else torch.device("cpu")
    xs, es = [], []
    for lo in range(start, stop, batch_size):
        index = range(lo, min(stop, lo + batch_size))
        eps = normal(shape, seed, index, NOISE_STREAM)
        batch_cond = dict(cond or {})
        if labels is not None:
            batch_cond[label_key] = labels[lo - start : lo - start + len(index)].to(where)
        with torch.no_grad():
            x0 = sample(teacher, eps.to(where), sampler, index=index, cond=batch_cond).x
        xs.append(x0.detach().cpu().float())
        es.append(eps)
    return torch.cat(xs), torch.cat(es)


def _check_teacher(root: Path, manifest: dict[str, Any], digest: str) -> None:
    if manifest.get("teacher") != digest:
        raise UserError(
            f"the pairs in {str(root)!r} were made by another teacher (hash "
            f"{str(manifest.get('teacher'))[:12]}..., this teacher {digest[:12]}...): use a new "
            "directory or the teacher that made them"
        )


def _open_directory(root: Path, manifest: dict[str, Any]) -> None:
    path = root / MANIFEST
    if path.is_file():
        old = json.loads(path.read_text())
        _check_teacher(root, old, manifest["teacher"])
        different = sorted(k for k in manifest if old.get(k) != manifest[k])
        if different:
            raise UserError(
                f"the pairs in {str(root)!r} were made with other settings ({', '.join(different)}"
                f"): use a new directory, or the same {', '.join(different)}"
            )
        return
    root.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, path)


def _read_chunk(file: Path, rows: int) -> tuple[Tensor, Tensor, Tensor | None] | None:
    """A complete chunk file, or None (absent; a partial write never has the final name)."""
    if not file.is_file():
        return None
    from safetensors.torch import load_file

    tensors = load_file(str(file))
    if tensors["x0"].shape[0] != rows:
        raise UserError(f"{file} has {tensors['x0'].shape[0]} pairs, expected {rows}")
    return tensors["x0"], tensors["eps"], tensors.get("labels")


def _write_chunk(file: Path, x0: Tensor, eps: Tensor, labels: Tensor | None = None) -> None:
    from safetensors.torch import save_file

    tmp = file.with_suffix(".tmp")
    tensors = {"x0": x0.contiguous(), "eps": eps.contiguous()}
    if labels is not None:
        tensors["labels"] = labels.contiguous()
    save_file(tensors, str(tmp))
    os.replace(tmp, file)  # atomic: an interrupted write leaves no chunk file
