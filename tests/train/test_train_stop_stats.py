"""A stopped run writes the loss of its last steps and the stop to stats.jsonl (issue 19): the
row's loss is the mean of those steps' losses in an uninterrupted run with a row per step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from train_helpers import make_config, make_data, make_model, make_objective

from interpolant.train import Trainer
from interpolant.train import checkpoint as ckpt

HERE = Path(__file__).resolve().parent
SETTINGS = dict(steps=100_000, checkpoint_every=100_000, lr_schedule="constant")

SCRIPT = """
import sys, time
sys.path.insert(0, {here!r})
from pathlib import Path
from train_helpers import make_config, make_data, make_model, make_objective
from interpolant.train import Trainer
from interpolant.train.stop import TrainingStopped

run_dir = Path(sys.argv[1])
x, y = make_data()

def hook(trainer, step):  # tells the test how far training got; slows it so a signal lands
    (run_dir / "progress").write_text(str(step))
    time.sleep(0.02)

cfg = make_config(run_dir, log_every=5, **{settings!r})
try:
    Trainer(make_model(), make_objective(), x, cfg, y, step_hook=hook).run()
except TrainingStopped as stop:
    print(stop)
    sys.exit(stop.exit_status)
"""


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]


def _reference_losses(run_dir: Path, steps: int) -> dict[int, float]:
    """Per-step losses of the same run, uninterrupted, logged every step."""
    x, y = make_data()
    cfg = make_config(run_dir, log_every=1, **{**SETTINGS, "steps": steps})
    Trainer(make_model(), make_objective(), x, cfg, y).run()
    return {row["step"]: row["loss"] for row in _rows(run_dir)}


def test_sigint_to_a_subprocess_logs_the_unlogged_steps_and_the_stop(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(SCRIPT.format(here=str(HERE), settings=SETTINGS)))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    progress = run_dir / "progress"
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if progress.is_file() and progress.read_text() and int(progress.read_text()) >= 7:
            break
        time.sleep(0.01)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT, err
    stop_step = int(ckpt.verify(ckpt.find_resume(run_dir / "checkpoints"))["step"])
    assert f"stopped by SIGINT after step {stop_step} of 100000" in out
    rows = _rows(run_dir)
    assert rows[-1]["step"] == stop_step and rows[-1]["stopped"] == "SIGINT"
    assert all("stopped" not in row for row in rows[:-1])
    assert [row["step"] for row in rows[:-1]] == list(range(5, stop_step, 5))

    # Each row's loss is the mean over its steps of an uninterrupted run's per-step losses.
    reference = _reference_losses(tmp_path / "reference", stop_step)
    first = 1
    for row in rows:
        losses = [reference[s] for s in range(first, row["step"] + 1)]
        assert row["loss"] == pytest.approx(sum(losses) / len(losses), rel=1e-6, abs=1e-7)
        first = row["step"] + 1


@pytest.mark.parametrize("stop_at", [4, 5])
def test_a_requested_stop_marks_its_row(tmp_path, stop_at):
    """log_every=2: a stop after step 4 marks step 4's row; after step 5 adds step 5's own row
    (its loss: step 5's). A resumed run keeps the rows and continues after them."""

    def hook(trainer, step):
        if step == stop_at:
            trainer.request_stop()

    x, y = make_data()
    cfg = make_config(tmp_path / "run", log_every=2, **{**SETTINGS, "steps": 8})
    trainer = Trainer(make_model(), make_objective(), x, cfg, y, step_hook=hook).run()
    assert trainer.step == stop_at
    rows = _rows(tmp_path / "run")
    assert [row["step"] for row in rows] == [2, 4, 5][: 2 + (stop_at == 5)]
    assert rows[-1]["stopped"] == "request" and all("stopped" not in r for r in rows[:-1])
    reference = _reference_losses(tmp_path / "reference", 8)
    assert rows[-1]["loss"] == pytest.approx(
        reference[5] if stop_at == 5 else (reference[3] + reference[4]) / 2, rel=1e-6
    )
    Trainer(make_model(), make_objective(), x, cfg, y).run()  # resumes at stop_at
    steps = [row["step"] for row in _rows(tmp_path / "run")]
    assert steps == [2, 4, 5, 6, 8] if stop_at == 5 else [2, 4, 6, 8]
