"""Per-sample conditioning of any structure for the trainer: a mapping of (N, ...) tensors.

Row ``i`` of every tensor belongs to training example ``i``; the trainer hands the loss
``{key: tensor[rows]}`` for the rows of each micro-batch, on every rank alike (each rank keeps
the whole mapping, as it keeps an in-memory data tensor). Class labels are the special case
``{config.cond_key: labels}``.

A row with a missing modality is refused before training: a NaN in a floating tensor, or a
``False`` in an optional boolean mask ``masks[key]`` (N,), marks the modality of that row as
absent. The mapping's keys, shapes, dtypes and a sha256 of each tensor's bytes go into every
checkpoint's data description (:func:`describe_cond`), and a resume with other conditioning is
refused (:func:`check_cond_resume`): a model trained on one labelling must not silently continue
on another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import UserError, WrongTypeError
from .checkpoint import CheckpointError


def as_cond(
    labels: Tensor | None,
    cond: Mapping[str, Tensor] | None,
    cond_key: str,
    n: int,
    masks: Mapping[str, Tensor] | None = None,
) -> dict[str, Tensor] | None:
    """The conditioning mapping the trainer keeps: ``cond`` and/or ``labels`` (under
    ``cond_key``), each checked to hold ``n`` complete rows. Returns None when there is none."""
    merged: dict[str, Tensor] = {}
    if cond is not None:
        if not isinstance(cond, Mapping):
            raise WrongTypeError(
                f"cond must be a mapping of name -> (N, ...) tensor, got {type(cond).__name__}"
            )
        merged.update(cond)
    if labels is not None:
        if cond_key in merged:
            raise UserError(
                f"labels and cond[{cond_key!r}] both given: pass the labels once (either as "
                f"labels= or inside cond=)"
            )
        merged[cond_key] = labels
    for key, value in merged.items():
        if not isinstance(key, str) or not key:
            raise UserError(f"cond keys must be non-empty strings (keyword names), got {key!r}")
        if not isinstance(value, Tensor):
            raise WrongTypeError(f"cond[{key!r}] must be a tensor, got {type(value).__name__}")
        if value.ndim < 1 or value.shape[0] != n:
            raise UserError(
                f"cond[{key!r}] must have one row per training example ({n}), got shape "
                f"{tuple(value.shape)}"
            )
    check_complete(merged, masks)
    return merged or None


def check_complete(cond: Mapping[str, Tensor], masks: Mapping[str, Tensor] | None = None) -> None:
    """Refuse the first row whose modality is missing (NaN in a floating tensor, or False in
    ``masks[key]``), naming the row and the key."""
    for key, mask in (masks or {}).items():
        if key not in cond:
            raise UserError(f"masks names {key!r}, which is not a cond key ({sorted(cond)})")
        n = cond[key].shape[0]
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.shape != (n,):
            got = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
            raise UserError(f"masks[{key!r}] must be a bool tensor of shape ({n},), got {got}")
        absent = (~mask).nonzero()
        if absent.numel():
            row = int(absent[0, 0])
            raise UserError(
                f"cond[{key!r}] is missing in row {row} (masks[{key!r}][{row}] is False; "
                f"{absent.shape[0]} rows in all): every training row needs every modality: "
                "drop those rows or fill the modality in"
            )
    for key, value in cond.items():
        if value.is_floating_point() or value.is_complex():
            bad = torch.isnan(value.reshape(value.shape[0], -1)).any(dim=1).nonzero()
            if bad.numel():
                row = int(bad[0, 0])
                raise UserError(
                    f"cond[{key!r}] is missing in row {row} (it holds NaN; {bad.shape[0]} rows "
                    "in all): every training row needs every modality: drop those rows or "
                    "fill the modality in"
                )


def select(cond: Mapping[str, Tensor] | None, rows: Tensor) -> dict[str, Tensor] | None:
    """``{key: tensor[rows]}`` for one micro-batch."""
    if cond is None:
        return None
    return {key: value[rows] for key, value in cond.items()}


def to_device(cond: Mapping[str, Tensor] | None, device: torch.device) -> dict[str, Tensor] | None:
    """The mapping with every tensor on ``device``."""
    if cond is None:
        return None
    return {key: value.to(device) for key, value in cond.items()}


def fingerprint(value: Tensor) -> str:
    """sha256 of a tensor's bytes (CPU, contiguous)."""
    raw = value.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()
    return hashlib.sha256(raw).hexdigest()


def describe_cond(cond: Mapping[str, Tensor] | None) -> dict[str, Any] | None:
    """JSON description of the conditioning for ``state.json``: per key its shape (of one
    row), dtype and fingerprint."""
    if cond is None:
        return None
    return {
        key: {
            "shape": list(value.shape[1:]),
            "dtype": str(value.dtype).replace("torch.", ""),
            "fingerprint": fingerprint(value),
        }
        for key, value in sorted(cond.items())
    }


def check_cond_resume(file: str | Path, saved: Any, current: Any) -> None:
    """Refuse a checkpoint trained with other conditioning (other keys, shapes, dtypes or
    values). ``saved`` is the checkpoint's data description; one written before conditioning was
    recorded (no ``cond`` entry) is not compared."""
    if "cond" not in saved:
        return
    saved = saved["cond"]
    if saved == current:
        return
    saved_keys = sorted(saved or {})
    current_keys = sorted(current or {})
    if saved_keys != current_keys:
        raise CheckpointError(
            f"{file} was trained with cond keys {saved_keys}, this run has {current_keys}: "
            "resume with the same conditioning or use a new run_dir"
        )
    diffs = [
        f"cond[{key!r}].{field}"
        for key in current_keys
        for field in ("shape", "dtype", "fingerprint")
        if saved[key].get(field) != current[key].get(field)
    ]
    raise CheckpointError(
        f"{file} was trained with other conditioning ({', '.join(diffs)} differ): resume with "
        "the same conditioning or use a new run_dir"
    )


__all__ = [
    "as_cond",
    "check_complete",
    "check_cond_resume",
    "describe_cond",
    "fingerprint",
    "select",
    "to_device",
]
