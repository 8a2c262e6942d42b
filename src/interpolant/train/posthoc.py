"""EDM2 post-hoc EMA for a training run (Karras et al. 2024, sec. 3.2).

During training a few power-function EMAs (``ema_posthoc_stds``, sigma_rel 0.05 and 0.10 by
default) are tracked and snapshotted every ``ema_snapshot_every`` updates to
``<run_dir>/ema_snapshots/step-<updates>.safetensors`` (keys ``"<sigma_rel>/<param>"``, the
update count and sigma_rel values in the safetensors metadata). After training,
:func:`posthoc_ema` combines the snapshots by least squares into the EMA of any sigma_rel at
any snapshot time, so the EMA length can be chosen after the fact.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from torch import Tensor, nn

from ..errors import MissingFileError, UserError
from . import state as st
from .checkpoint import checkpoint_name, save_tensors_atomic
from .ema import EMA, posthoc_reconstruct, sigma_rel_to_gamma

SNAPSHOT_DIR = "ema_snapshots"


def _key(sigma_rel: float, name: str) -> str:
    return f"{sigma_rel!r}/{name}"


class PosthocTracker:
    """Power EMAs of ``module`` for several sigma_rel, updated together."""

    def __init__(self, module: nn.Module, stds: Sequence[float]):
        if not stds:
            raise UserError("PosthocTracker needs at least one sigma_rel")
        self.emas = {float(s): EMA(module, "power", sigma_rel=float(s)) for s in stds}

    def update(self, module: nn.Module, step: int) -> None:
        for ema in self.emas.values():
            ema.update(module, step)

    def state(self) -> dict[str, Tensor]:
        """All averaged tensors, full and on CPU, keyed ``"<sigma_rel>/<param>"`` (collective
        under FSDP2)."""
        out = {}
        for std, ema in self.emas.items():
            out.update({_key(std, k): v for k, v in st.ema_state(ema.shadow).items()})
        return out

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {
            _key(std, k): tuple(v.shape)
            for std, e in self.emas.items()
            for k, v in e.shadow.items()
        }

    def load(self, state: dict[str, Tensor]) -> None:
        for std, ema in self.emas.items():
            prefix = f"{std!r}/"
            part = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            st.load_ema_state(ema.shadow, part)

    def write_snapshot(self, run_dir: str | Path, step: int, state: dict[str, Tensor]) -> Path:
        """Write ``state`` (from :meth:`state`) as the snapshot after ``step`` updates."""
        folder = Path(run_dir) / SNAPSHOT_DIR
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{checkpoint_name(step)}.safetensors"
        meta = {"updates": str(step), "sigma_rel": json.dumps(sorted(self.emas))}
        save_tensors_atomic(path, state, meta)
        return path


def read_snapshots(run_dir: str | Path) -> list[tuple[int, float, dict[str, Tensor]]]:
    """Every stored (updates, gamma, tensors) triple of a run, oldest first."""
    out = []
    for path in sorted((Path(run_dir) / SNAPSHOT_DIR).glob("step-*.safetensors")):
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            if "updates" not in meta or "sigma_rel" not in meta:
                raise UserError(f"{path} is not an EMA snapshot (metadata {meta})")
            step, stds = int(meta["updates"]), json.loads(meta["sigma_rel"])
            for std in stds:
                prefix = f"{float(std)!r}/"
                tensors = {
                    k[len(prefix) :]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)
                }
                out.append((step, sigma_rel_to_gamma(float(std)), tensors))
    return out


@torch.no_grad()
def posthoc_ema(
    run_dir: str | Path, sigma_rel: float, step: int | None = None
) -> dict[str, Tensor]:
    """The power EMA with ``sigma_rel`` after ``step`` updates (default: the last snapshot),
    reconstructed from the run's snapshots taken at or before ``step``."""
    snaps = read_snapshots(run_dir)
    if step is not None:
        snaps = [s for s in snaps if s[0] <= step]
    if not snaps:
        raise MissingFileError(f"no EMA snapshots under {Path(run_dir) / SNAPSHOT_DIR}")
    return posthoc_reconstruct(snaps, sigma_rel, step)
