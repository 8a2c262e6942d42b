"""``run_dir/stats.jsonl``: the training statistics, one JSON row per logged interval.

Every ``log_every`` steps (and after the last) a row holds the mean over the steps since the
previous row of the loss (averaged over ranks) and of the global gradient norm, with the step,
kimg, learning rate, throughput and training time. When a run is stopped (Ctrl-C / SIGTERM, or
a step hook's ``request_stop``) after a step that did not end an interval, the steps since the
last row are written as a row of their own, so no finished step's loss is lost; the row of the
stopping step carries ``"stopped": <signal name or "request">``. A resumed run first drops the
rows after its checkpoint (those of a session that died before saving them).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import checkpoint as ckpt
from . import distributed as dist_util
from .distributed import DistInfo

FILE = "stats.jsonl"


class StatsLog:
    """Accumulates per-step loss and gradient norm on every rank and writes rows on rank 0."""

    def __init__(self, run_dir: Path, info: DistInfo, batch_size: int, tensorboard: bool):
        self.path = Path(run_dir) / FILE
        self.info, self.batch_size, self.tensorboard = info, batch_size, tensorboard
        self.loss_sum = torch.zeros((), device=info.device)
        self.norm_sum = torch.zeros((), device=info.device)
        self.count = 0
        self.t_last = time.perf_counter()
        self._writer: Any = None  # TensorBoard's, opened at the first row

    def add(self, loss: Tensor, grad_norm: Tensor) -> None:
        """One finished step's (rank-local mean loss, global grad norm)."""
        self.loss_sum += loss.detach()
        self.norm_sum += grad_norm.detach().float()
        self.count += 1

    def write(
        self,
        step: int,
        lr: float,
        time_s: float,
        extra: dict[str, Any] | None = None,
        bar: Any = None,
    ) -> dict[str, Any] | None:
        """Write the row of the steps since the previous one, ending at ``step`` (collective: the
        loss is averaged over ranks). Returns the row on rank 0, None elsewhere or when no step
        is pending."""
        if self.count == 0:
            return None
        now = time.perf_counter()
        loss = float(dist_util.all_reduce_mean(self.loss_sum / self.count, self.info).item())
        row: dict[str, Any] = {
            "step": step,
            "kimg": step * self.batch_size / 1000.0,
            "loss": loss,
            "lr": lr,
            "grad_norm": float((self.norm_sum / self.count).item()),
            "samples_per_s": self.count * self.batch_size / max(now - self.t_last, 1e-9),
            "time_s": time_s,
            **(extra or {}),
        }
        self.loss_sum.zero_()
        self.norm_sum.zero_()
        self.count, self.t_last = 0, now
        if not self.info.is_main:
            return None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tensorboard:  # the same scalars for TensorBoard (lazy import)
            from .tensorboard import write_scalars

            self._writer = write_scalars(self._writer, self.path.parent, row)
        if bar is not None:
            bar.set_postfix(loss=f"{loss:.4g}", lr=f"{lr:.3g}")
        return row

    def stop(
        self, step: int, lr: float, time_s: float, reason: str, extra: dict[str, Any] | None
    ) -> None:
        """The run stops after ``step``: write the pending steps' row marked ``"stopped":
        reason``, or, when ``step`` was just logged, mark that row (collective)."""
        if self.write(step, lr, time_s, {**(extra or {}), "stopped": reason}) is not None:
            return
        if not self.info.is_main or not self.path.is_file():
            return
        lines = [line for line in self.path.read_text().splitlines() if line.strip()]
        if lines and json.loads(lines[-1]).get("step") == step:
            last = {**json.loads(lines[-1]), "stopped": reason}
            lines[-1] = json.dumps(last)
            ckpt.write_text_atomic(self.path, "".join(line + "\n" for line in lines))

    def trim(self, step: int) -> None:
        """Drop rows logged after ``step`` by a run that died before its next checkpoint
        (rank 0)."""
        if not self.path.exists():
            return
        rows = [line for line in self.path.read_text().splitlines() if line.strip()]
        kept = [line for line in rows if json.loads(line)["step"] <= step]
        if len(kept) != len(rows):
            ckpt.write_text_atomic(self.path, "".join(line + "\n" for line in kept))


__all__ = ["FILE", "StatsLog"]
