"""Checkpoints on disk: safetensors for tensors, JSON for everything else, never pickles.

Layout of ``<run_dir>/checkpoints``::

    step-00000100/           one complete checkpoint (100 updates done)
        model.safetensors    network weights
        ema.safetensors      averaged weights
        optimizer.safetensors  AdamW moments and step counts, keyed "<param>.<slot>"
        state.json           config, step, RNG states (base64), data description, and the
                             byte size and sha256 of each file above
    latest                   name of the newest complete checkpoint (updated last)
    .tmp-step-00000200-...   a write in progress or killed (ignored, removed on the next start)

A checkpoint is written into a temporary folder next to its final place; every file is fsynced,
``state.json`` is written last, then one ``os.replace`` makes it appear complete, and the
``latest`` pointer is replaced after that. A crash therefore leaves either the old or the new
checkpoint complete, never a half-written one under a final name. Resuming scans the folder
names (``latest`` is for people and tools), so a crash between the rename and the pointer update
still resumes from the newest checkpoint.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from ..errors import UserError

FORMAT = "interpolant-checkpoint"
VERSION = 1
STATE_FILE = "state.json"
LATEST = "latest"
_NAME = re.compile(r"^step-(\d+)$")


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that must not be resumed from (corrupt, truncated or mismatched): the
    user's file, so the command line shows it as a one-line error."""


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


# --- bytes and RNG states as JSON -------------------------------------------------------------


def encode_bytes(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode_bytes(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def rng_state_bytes(device: torch.device) -> bytes:
    """This process's global torch RNG state (CPU, plus the CUDA device's) as raw bytes:
    an 8-byte length of the CPU part, the CPU state, then the CUDA state."""
    cpu = torch.get_rng_state().numpy().tobytes()
    cuda = torch.cuda.get_rng_state(device).numpy().tobytes() if device.type == "cuda" else b""
    return len(cpu).to_bytes(8, "little") + cpu + cuda


def set_rng_state_bytes(data: bytes, device: torch.device) -> None:
    """Restore what :func:`rng_state_bytes` saved."""
    n = int.from_bytes(data[:8], "little")
    cpu, cuda = data[8 : 8 + n], data[8 + n :]
    torch.set_rng_state(torch.frombuffer(bytearray(cpu), dtype=torch.uint8))
    if cuda and device.type == "cuda":
        torch.cuda.set_rng_state(torch.frombuffer(bytearray(cuda), dtype=torch.uint8), device)


# --- optimiser state <-> flat tensors ---------------------------------------------------------


def flatten_optimizer(state: dict[str, dict[str, Any]]) -> tuple[dict[str, Tensor], dict]:
    """Split ``{param_name: {slot: value}}`` into safetensors-ready tensors ``"name.slot"`` and
    JSON-ready non-tensor values."""
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for name, slots in state.items():
        for slot, value in slots.items():
            if isinstance(value, Tensor):
                tensors[f"{name}.{slot}"] = value
            else:
                scalars.setdefault(name, {})[slot] = value
    return tensors, scalars


def unflatten_optimizer(tensors: dict[str, Tensor], scalars: dict) -> dict[str, dict[str, Any]]:
    """Inverse of :func:`flatten_optimizer`."""
    state: dict[str, dict[str, Any]] = {name: dict(slots) for name, slots in scalars.items()}
    for key, value in tensors.items():
        name, slot = key.rsplit(".", 1)
        state.setdefault(name, {})[slot] = value
    return state


# --- writing ----------------------------------------------------------------------------------


def _fsync_path(path: Path) -> None:
    """Flush a file's or a folder's contents to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file next to ``path``, fsync it, then ``os.replace``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_path(path.parent)


def save_tensors_atomic(
    path: Path, tensors: dict[str, Tensor], metadata: dict[str, str] | None = None
) -> None:
    """``save_file`` to a temporary file next to ``path``, fsync, then ``os.replace``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata)
    _fsync_path(tmp)
    os.replace(tmp, path)
    _fsync_path(path.parent)


def write_checkpoint(
    root: str | Path,
    step: int,
    tensors: dict[str, dict[str, Tensor]],
    state: dict[str, Any],
    keep: int | None = None,
) -> Path:
    """Write ``tensors[file_stem]`` to ``<stem>.safetensors`` and ``state`` to state.json as the
    complete checkpoint ``root/step-<step>``; keep the newest ``keep`` checkpoints."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    tmp = root / f".tmp-{checkpoint_name(step)}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    files = {}
    for stem, group in tensors.items():
        path = tmp / f"{stem}.safetensors"
        save_file({k: v.detach().contiguous().cpu() for k, v in group.items()}, str(path))
        _fsync_path(path)
        files[path.name] = {"bytes": path.stat().st_size, "sha256": _digest(path)}
    meta = {"format": FORMAT, "version": VERSION, "step": int(step), **state, "files": files}
    with open(tmp / STATE_FILE, "w") as f:  # written last: its presence marks completeness
        json.dump(meta, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    _fsync_path(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_path(root)
    write_text_atomic(root / LATEST, final.name + "\n")
    if keep is not None:
        for _, old in list_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def remove_incomplete(root: str | Path) -> list[Path]:
    """Delete leftover temporary checkpoint folders; returns what was removed."""
    root = Path(root)
    removed = sorted(p for p in root.glob(".tmp-step-*") if p.is_dir()) if root.exists() else []
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


# --- reading ----------------------------------------------------------------------------------


def list_checkpoints(root: str | Path) -> list[tuple[int, Path]]:
    """Checkpoint folders under their final names, oldest first (complete or not)."""
    root = Path(root)
    if not root.exists():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name))]
    return sorted(f for f in found if f[1].is_dir())


def find_resume(root: str | Path, log: Callable[[str], None] = print) -> Path | None:
    """The newest checkpoint to resume from, or None if there is none.

    A folder without state.json (never finished) is skipped with a message and the previous
    one is used; leftover temporary folders are reported. Each candidate is verified (sizes
    and hashes); a corrupt or truncated one is skipped too, with a message naming it, why, and
    the checkpoint used instead. When every checkpoint is corrupt, :class:`CheckpointError`
    names them all (training from scratch over them would hide the damage).
    """
    root = Path(root)
    for tmp in sorted(root.glob(".tmp-step-*")) if root.exists() else []:
        log(f"ignoring incomplete checkpoint {tmp} (its write did not finish)")
    corrupt: list[str] = []
    for _, path in reversed(list_checkpoints(root)):
        if not (path / STATE_FILE).exists():
            log(f"skipping incomplete checkpoint {path} (no {STATE_FILE}); trying the previous one")
            continue
        try:
            verify(path)
        except CheckpointError as err:
            corrupt.append(str(err))
            log(f"skipping corrupt checkpoint {path} ({err}); trying the previous one")
            continue
        if corrupt:
            log(f"using {path} instead of the newer corrupt checkpoint(s)")
        return path
    if corrupt:
        raise CheckpointError(
            f"no intact checkpoint under {root}: {'; '.join(corrupt)} "
            "(move the folder away to start afresh)"
        )
    return None


def verify(path: str | Path) -> dict[str, Any]:
    """Read state.json and check every listed file's size and sha256; returns the state."""
    path = Path(path)
    state_path = path / STATE_FILE
    try:
        state = json.loads(state_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"cannot read {state_path}: {err}") from err
    if state.get("format") != FORMAT or state.get("version") != VERSION:
        raise CheckpointError(
            f"{state_path} is not an {FORMAT} v{VERSION} file "
            f"(format={state.get('format')!r}, version={state.get('version')!r})"
        )
    for name, info in state.get("files", {}).items():
        file = path / name
        if not file.exists():
            raise CheckpointError(f"checkpoint file {file} is missing")
        size = file.stat().st_size
        if size != info["bytes"]:
            raise CheckpointError(
                f"checkpoint file {file} is truncated or altered: {size} bytes, "
                f"{info['bytes']} expected"
            )
        if _digest(file) != info["sha256"]:
            raise CheckpointError(f"checkpoint file {file} is corrupt: sha256 differs")
    return state


def read_tensors(path: str | Path, stem: str) -> dict[str, Tensor]:
    """The tensors of ``<stem>.safetensors`` (safetensors only: no code is ever unpickled)."""
    file = Path(path) / f"{stem}.safetensors"
    try:
        return load_file(str(file))
    except Exception as err:  # safetensors raises its own error types
        raise CheckpointError(f"cannot read {file}: {err}") from err


def check_tensors(
    file: str | Path, found: dict[str, Tensor], expected: dict[str, tuple[int, ...]]
) -> None:
    """Refuse tensors whose names or shapes differ from ``expected``, naming what differs."""
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    shapes = [
        f"{k}: {tuple(found[k].shape)} in checkpoint, {tuple(expected[k])} in model"
        for k in sorted(set(found) & set(expected))
        if tuple(found[k].shape) != tuple(expected[k])
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''}")
    if extra:
        problems.append(f"unexpected keys {extra[:8]}{' ...' if len(extra) > 8 else ''}")
    if shapes:
        problems.append("shape mismatch " + "; ".join(shapes[:8]))
    if problems:
        raise CheckpointError(f"{file} does not fit the model: " + "; ".join(problems))


def differences(
    saved: dict[str, Any], current: dict[str, Any], prefix: str = "", now: str = "now"
) -> list[str]:
    """``"key.sub: A in checkpoint, B now"`` for every dotted key whose value differs between
    two JSON descriptions (nested mappings compared key by key; tuples equal lists)."""
    saved, current = json.loads(json.dumps(saved)), json.loads(json.dumps(current))
    out = []
    for key in sorted(set(saved) | set(current), key=str):
        a, b = saved.get(key, "<absent>"), current.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.", now)
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} in checkpoint, {b!r} {now}")
    return out


def check_network(
    file: str | Path,
    saved: dict[str, Any],
    current: dict[str, Any],
    prefix: str = "",
    now: str = "now",
) -> None:
    """Refuse a checkpoint whose network description differs from the current one, naming
    each differing key (``prefix`` makes them the config's dotted keys, e.g. ``train.``)."""
    diffs = differences(saved, current, prefix, now)
    if diffs:
        raise CheckpointError(f"{file} was written for another network: " + "; ".join(diffs))


def check_data_shape(
    file: str | Path, saved: dict[str, Any], current: dict[str, Any], now: str = "now"
) -> None:
    """Refuse a checkpoint trained on examples of another shape or dtype (``data`` entries of
    state.json: ``{"shape": [...], "dtype": ..., "latent_shape": [...]}``, the last for latent
    training); keys absent on either side are not compared."""
    diffs = [
        f"data.{key}: {saved[key]!r} in checkpoint, {current[key]!r} {now}"
        for key in ("shape", "dtype", "latent_shape")
        if key in saved and key in current and _as_list(saved[key]) != _as_list(current[key])
    ]
    if diffs:
        raise CheckpointError(f"{file} was trained on other data: " + "; ".join(diffs))


def _as_list(value: Any) -> Any:
    """Tuples as lists (JSON has no tuples)."""
    return list(value) if isinstance(value, tuple | list) else value
