"""How the command line ends when it is stopped: Ctrl-C / SIGTERM (one line; for training, where
the checkpoint is and the command that resumes) and a reader that closed our output pipe."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence


def resume_command(argv: Sequence[str]) -> str:
    """The command that continues the run ``argv`` trained (the same, resuming; under torchrun
    with the same number of processes)."""
    import shlex

    kept = [a for a in argv if not a.startswith("train.resume=")]
    if len(kept) != len(argv):
        kept.append("train.resume=true")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    head = ["interpolant"] if world == 1 else ["torchrun", f"--nproc_per_node={world}", "-m"]
    return shlex.join([*head, *(["interpolant.cli"] if world > 1 else []), *kept])


def interrupted(err: KeyboardInterrupt, argv: Sequence[str]) -> int:
    """One line for an interrupted command; the exit status of a process ended by the signal."""
    from ..train.stop import TrainingStopped

    if not isinstance(err, TrainingStopped):
        print("interpolant: interrupted", file=sys.stderr)
        return 130
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"interpolant: {err}; resume with: {resume_command(argv)}", file=sys.stderr)
    return err.exit_status


def broken_pipe() -> int:
    """The reader of our output went away (``interpolant ... | head``): not an error of ours.
    stdout is pointed at /dev/null so that flushing it at exit does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141  # 128 + SIGPIPE, as a shell reports a process ended by a closed pipe


__all__ = ["broken_pipe", "interrupted", "resume_command"]
