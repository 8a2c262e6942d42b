"""TensorBoard scalars next to ``stats.jsonl`` (``TrainConfig.tensorboard``).

Every numeric value of a stats row becomes a scalar ``train/<key>`` at the row's step in
``run_dir/tensorboard``. A resumed run opens its writer with ``purge_step`` = its first logged
step, so the rows of the dead session after the checkpoint are discarded, as ``stats.jsonl``
drops them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError

LOG_DIR = "tensorboard"


def summary_writer_class() -> Any:
    """``torch.utils.tensorboard.SummaryWriter``, or a MissingDependencyError naming the extra
    (called before training starts, so that a run does not fail at its first log)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise MissingDependencyError(
            "train.tensorboard needs the tensorboard package: pip install "
            "'interpolant[tensorboard]' (or set train.tensorboard=false)"
        ) from err
    return SummaryWriter


def open_writer(run_dir: str | Path, first_step: int) -> Any:
    """A ``SummaryWriter`` on ``run_dir/tensorboard`` that drops events at steps >= first_step."""
    writer_class = summary_writer_class()
    return writer_class(log_dir=str(Path(run_dir) / LOG_DIR), purge_step=first_step)


def write_scalars(writer: Any, run_dir: str | Path, row: dict[str, Any]) -> Any:
    """Write ``row``'s numbers at ``row["step"]`` (opening the writer on the first call) and
    flush; returns the writer to pass to the next call."""
    step = int(row["step"])
    if writer is None:
        writer = open_writer(run_dir, step)
    for key, value in row.items():
        if key != "step" and isinstance(value, int | float) and not isinstance(value, bool):
            writer.add_scalar(f"train/{key}", float(value), step)
    writer.flush()
    return writer


__all__ = ["LOG_DIR", "open_writer", "summary_writer_class", "write_scalars"]
