"""Identical continuation: N steps straight == k steps, stop (or SIGKILL), resume, N - k steps."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from train_helpers import assert_same, make_config, make_data, make_model, make_objective, state_of

from interpolant.train import Trainer

HERE = Path(__file__).resolve().parent
# Accumulation (4 rounds), dropout (global RNG), labels, warm-up, clipping, EMA and post-hoc
# EMA tracks are all on.
SETTINGS = dict(steps=8, batch_per_gpu=4, checkpoint_every=4, log_every=2, ema_snapshot_every=2)


def _run(run_dir, **changes):
    x, y = make_data()
    cfg = make_config(run_dir, **{**SETTINGS, **changes})
    return Trainer(make_model(), make_objective(), x, cfg, y).run()


def _stats(run_dir):
    lines = (Path(run_dir) / "stats.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("straight")
    return state_of(_run(run_dir)), _stats(run_dir)


def test_stop_and_resume_is_bitwise_identical(tmp_path, straight):
    first = _run(tmp_path, steps=3)  # stops between checkpoints: the final step is saved too
    assert first.step == 3
    resumed = _run(tmp_path)
    assert resumed.step == 8
    assert_same(state_of(resumed), straight[0])
    rows, ref = _stats(tmp_path), straight[1]
    assert [r["step"] for r in rows] == [2, 3, 4, 6, 8]
    assert [r["loss"] for r in rows if r["step"] in (2, 6, 8)] == [
        r["loss"] for r in ref if r["step"] in (2, 6, 8)
    ]


SCRIPT = """
import os, signal, sys
sys.path.insert(0, {here!r})
import interpolant.train.checkpoint as ck
from train_helpers import make_config, make_data, make_model, make_objective
from interpolant.train import Trainer

run_dir, mode, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
hook = None
if mode == "after-step":
    def hook(trainer, step):
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
else:  # die inside the checkpoint write, after the files but before the rename
    real_replace = os.replace
    def replace(src, dst):
        if ".tmp-" + ck.checkpoint_name(kill_at) in str(src):
            os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst)
    ck.os.replace = replace
x, y = make_data()
cfg = make_config(run_dir, **{settings!r})
Trainer(make_model(), make_objective(), x, cfg, y, step_hook=hook).run()
"""


@pytest.mark.parametrize(("mode", "kill_at"), [("after-step", 7), ("during-write", 8)])
def test_sigkill_then_resume_matches_the_uninterrupted_run(tmp_path, straight, mode, kill_at):
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(SCRIPT.format(here=str(HERE), settings=SETTINGS)))
    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(script), str(run_dir), mode, str(kill_at)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    root = run_dir / "checkpoints"
    assert (root / "latest").read_text().strip() == "step-00000004"
    if mode == "during-write":
        assert list(root.glob(".tmp-step-00000008-*"))  # the killed write is left behind
        assert not (root / "step-00000008").exists()
    assert max(r["step"] for r in _stats(run_dir)) > 4  # it had logged past the checkpoint

    resumed = _run(run_dir)
    assert resumed.step == 8
    assert_same(state_of(resumed), straight[0])
    log = (run_dir / "log.txt").read_text()
    assert "resumed from" in log and "step-00000004 at step 4" in log
    if mode == "during-write":
        assert "removed incomplete checkpoint" in log
    assert [r["step"] for r in _stats(run_dir)] == [2, 4, 6, 8]  # rows after 4 were redone
    assert [r["loss"] for r in _stats(run_dir)] == [r["loss"] for r in straight[1]]


def test_a_step_hook_can_stop_the_run_with_a_checkpoint(tmp_path, straight):
    x, y = make_data()
    cfg = make_config(tmp_path, **SETTINGS)

    def stop_at_3(trainer, step):
        if step == 3:
            trainer.request_stop()

    stopped = Trainer(make_model(), make_objective(), x, cfg, y, step_hook=stop_at_3).run()
    assert stopped.step == 3 and (tmp_path / "checkpoints" / "step-00000003").is_dir()
    resumed = _run(tmp_path)  # continues from the stop's checkpoint to the end, unchanged
    assert resumed.step == 8
    assert_same(state_of(resumed), straight[0])
