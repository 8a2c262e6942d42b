"""Ctrl-C (SIGINT) and SIGTERM during `interpolant train`: the step in progress finishes, a
checkpoint of it is written, one line says where it is and how to resume, and resuming with that
command continues bit for bit as if the run had not stopped (issue 19, Deliver 4)."""

import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from interpolant import api
from interpolant.train import checkpoint as ckpt

# A small toy2d-flow run: ~100 steps/s on one thread, so a signal lands mid-training.
OVERRIDES = [
    "train.model.width=32",
    "train.batch_size=64",
    "train.log_every=1",
    "train.checkpoint_every=100000",
    "train.ema_halflife_kimg=1",
    "train.lr_schedule=constant",  # the cosine one depends on train.steps, changed on resume
]
CLI = [sys.executable, "-m", "interpolant.cli"]


def _default_sigint() -> None:
    # A job started in the background of a shell inherits SIGINT ignored; a terminal's does not.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _rows(run_dir: Path) -> int:
    stats = run_dir / "stats.jsonl"
    return len(stats.read_text().splitlines()) if stats.is_file() else 0


def _interrupt(run_dir: Path, sig: signal.Signals, steps: int = 100_000) -> tuple[int, str]:
    """Start training, send ``sig`` once 3 steps are logged; (exit status, stderr)."""
    argv = ["--threads", "1", "train", "--preset", "toy2d-flow", *OVERRIDES]
    argv += [f"train.steps={steps}", f"train.run_dir={run_dir}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [*CLI, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=_default_sigint,
    )
    deadline = time.monotonic() + 120
    while _rows(run_dir) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def _message(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("interpolant:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


def test_sigint_checkpoints_the_step_and_the_printed_command_resumes_exactly(tmp_path):
    run_dir = tmp_path / "run"
    status, err = _interrupt(run_dir, signal.SIGINT)
    assert status == 128 + signal.SIGINT
    line = _message(err)
    found = ckpt.find_resume(run_dir / "checkpoints")
    assert found is not None
    step = int(ckpt.verify(found)["step"])
    # The checkpoint holds the last finished step: every logged step and nothing after it.
    assert step >= 3 and step == _rows(run_dir)
    assert f"after step {step} of 100000" in line and str(found) in line
    command = shlex.split(line.split("resume with: ", 1)[1])
    assert command[0] == "interpolant" and "--preset" in command

    # The printed command (with fewer total steps) continues from the checkpoint...
    total = step + 3
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*CLI, *command[1:], f"train.steps={total}"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    assert f"resumed from {found} at step {step}" in (run_dir / "log.txt").read_text()

    # ...to the same weights as a run that was never interrupted.
    torch.set_num_threads(1)
    ref_dir = tmp_path / "reference"
    overrides = [*OVERRIDES, f"train.steps={total}", f"train.run_dir={ref_dir}", "train.progress=0"]
    api.train("toy2d-flow", overrides, plots=False)
    for name in ("model", "ema", "optimizer"):
        file = f"{ckpt.checkpoint_name(total)}/{name}.safetensors"
        resumed = load_file(str(run_dir / "checkpoints" / file))
        reference = load_file(str(ref_dir / "checkpoints" / file))
        assert resumed.keys() == reference.keys()
        for key in reference:
            assert torch.equal(resumed[key], reference[key]), (name, key)


def test_sigterm_mid_run_checkpoints_that_step_and_restores_the_handlers(tmp_path):
    """In process: a step hook sends SIGTERM to this process during step 3; the run stops after
    it with a checkpoint of step 3 and raises TrainingStopped; the handlers are put back."""
    sys.path.insert(0, str(Path(__file__).resolve().parent / "train"))
    from train_helpers import make_config, make_data, make_model, make_objective

    from interpolant.train import Trainer
    from interpolant.train.stop import TrainingStopped

    def hook(trainer, step):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    x, y = make_data()
    cfg = make_config(tmp_path, steps=50, checkpoint_every=20, log_every=1)
    trainer = Trainer(make_model(), make_objective(), x, cfg, y, step_hook=hook)
    with pytest.raises(TrainingStopped) as caught:
        trainer.run()
    stop = caught.value
    assert (stop.signal_name, stop.step, stop.steps) == ("SIGTERM", 3, 50)
    assert stop.exit_status == 128 + signal.SIGTERM
    assert stop.checkpoint == tmp_path / "checkpoints" / ckpt.checkpoint_name(3)
    assert ckpt.verify(ckpt.find_resume(tmp_path / "checkpoints"))["step"] == 3
    assert "stopped by SIGTERM after step 3 of 50" in (tmp_path / "log.txt").read_text()
    assert signal.getsignal(signal.SIGTERM) is before


def test_resume_command_keeps_the_run_and_turns_resume_on():
    from interpolant.cli.exits import resume_command

    argv = ["train", "--preset", "toy2d-flow", "train.resume=false", "train.run_dir=a b"]
    assert resume_command(argv) == (
        "interpolant train --preset toy2d-flow 'train.run_dir=a b' train.resume=true"
    )


DDP_SCRIPT = """
import os, sys, json
sys.path.insert(0, {tests!r})
from train_helpers import make_config, make_data, make_model, make_objective
from interpolant.train import Trainer
from interpolant.train.stop import TrainingStopped

run_dir, rank = sys.argv[1], os.environ["RANK"]
x, y = make_data()
cfg = make_config(run_dir, steps=100000, batch_size=16, checkpoint_every=100000, log_every=1)
trainer = Trainer(make_model(), make_objective(), x, cfg, y)
open(os.path.join(run_dir, f"pid{{rank}}"), "w").write(str(os.getpid()))
try:
    trainer.run()
except TrainingStopped as stop:
    open(os.path.join(run_dir, f"stopped{{rank}}"), "w").write(
        json.dumps([stop.signal_name, stop.step])
    )
finally:
    trainer.close()
"""


@pytest.mark.distributed
def test_a_signal_to_one_ddp_rank_stops_both_after_the_same_step(tmp_path):
    """SIGTERM to rank 1 alone: both ranks stop after the same step, one checkpoint of it."""
    script = tmp_path / "job.py"
    tests = str(Path(__file__).resolve().parent / "train")
    script.write_text(textwrap.dedent(DDP_SCRIPT.format(tests=tests)))
    run_dir = tmp_path / "ddp"
    run_dir.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.Popen(
        [*cmd, str(script), str(run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 150
    while (_rows(run_dir) < 3 or not (run_dir / "pid1").is_file()) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(int((run_dir / "pid1").read_text()), signal.SIGTERM)
    out, _ = proc.communicate(timeout=150)
    assert proc.returncode == 0, out
    stopped = [json.loads((run_dir / f"stopped{r}").read_text()) for r in (0, 1)]
    assert stopped[0] == stopped[1] and stopped[0][0] == "SIGTERM", stopped
    found = ckpt.find_resume(run_dir / "checkpoints")
    assert found is not None and ckpt.verify(found)["step"] == stopped[0][1] >= 3
