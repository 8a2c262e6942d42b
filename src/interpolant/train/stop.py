"""Stopping a training run safely: Ctrl-C (SIGINT) and SIGTERM end it after a checkpoint.

While :meth:`Trainer.run` is training, :class:`StopSignals` replaces the SIGINT and SIGTERM
handlers by one that only records the signal. The step in progress finishes; the trainer then
decides with every rank (:func:`stop_decision`: one all-reduce, so a signal that reached one
rank only still stops all of them after the same step), writes a checkpoint (atomically, as
every checkpoint) and raises :class:`TrainingStopped`, which the command line prints as one line
with the command that resumes. A second signal stops at once, without that checkpoint (the
newest complete one stays: checkpoints are written to a temporary folder and renamed).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from .distributed import DistInfo

#: The signals that stop a run after the current step.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingStopped(KeyboardInterrupt):
    """Training was stopped by a signal after ``step`` of ``steps`` updates; the checkpoint
    ``checkpoint`` holds that step. A ``KeyboardInterrupt``, so code that carries on after
    ordinary exceptions still stops."""

    def __init__(self, signal_name: str, step: int, steps: int, checkpoint: Path) -> None:
        self.signal_name, self.step, self.steps, self.checkpoint = (
            signal_name,
            step,
            steps,
            checkpoint,
        )
        super().__init__(
            f"stopped by {signal_name} after step {step} of {steps}; checkpoint {checkpoint}"
        )

    @property
    def exit_status(self) -> int:
        """128 + the signal number, the shell's convention for a process ended by a signal."""
        return 128 + int(signal.Signals[self.signal_name])


class StopSignals:
    """Context manager: SIGINT/SIGTERM only set :attr:`received` (the first signal's name);
    a second one raises ``KeyboardInterrupt``. Handlers can be set only in the main thread, and
    a signal the process was told to ignore (``nohup``, ``cmd &``) stays ignored."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:  # asked twice: stop now, without a last checkpoint
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name


def stop_decision(
    signalled: str | None, requested: bool, info: DistInfo
) -> tuple[str | None, bool]:
    """What every rank does after a step: (the name of a signal received on any rank, whether
    rank 0's step hook asked to stop). One all-reduce (MAX) when distributed."""
    number = int(signal.Signals[signalled]) if signalled else 0
    flags = torch.tensor([number, int(requested and info.is_main)], device=info.device)
    if info.distributed:
        torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
    number, stop = int(flags[0]), bool(flags[1])
    return (signal.Signals(number).name if number else None), stop


__all__ = ["STOP_SIGNALS", "StopSignals", "TrainingStopped", "stop_decision"]
