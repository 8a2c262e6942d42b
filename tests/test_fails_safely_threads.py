"""The command line's intra-op thread count: 1 for small models, the free cores for larger ones,
``--threads`` and OMP_NUM_THREADS as overrides; a closed pipe is not an internal error."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from interpolant import threads
from interpolant.cli.main import main
from interpolant.threads import SMALL_MODEL_PARAMETERS, choose_threads, free_cores


@pytest.fixture(autouse=True)
def _restore_threads():
    before, policy = torch.get_num_threads(), threads.get_policy()
    yield
    torch.set_num_threads(before)
    threads.set_policy(policy)


def test_small_models_get_one_thread_whatever_the_cores():
    assert choose_threads(46_000, cores=16, load=0.0) == 1
    assert choose_threads(SMALL_MODEL_PARAMETERS - 1, cores=2, load=0.0) == 1


@pytest.mark.parametrize(
    "cores, load, ranks, expected",
    [(2, 0.0, 1, 2), (2, 1.0, 1, 1), (2, 9.7, 1, 1), (16, 3.0, 1, 13), (16, 0.0, 2, 8)],
)
def test_larger_models_get_the_free_cores_per_local_rank(monkeypatch, cores, load, ranks, expected):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(ranks))
    assert free_cores(cores, load) == expected
    assert choose_threads(SMALL_MODEL_PARAMETERS, cores=cores, load=load) == expected


def test_the_policy_sets_threads_only_when_auto():
    small = torch.nn.Linear(10, 10)
    torch.set_num_threads(2)
    threads.set_policy("fixed")
    assert threads.apply_policy(small) is None and torch.get_num_threads() == 2
    threads.set_policy("auto")
    assert threads.apply_policy(small) == 1 and torch.get_num_threads() == 1


def test_the_command_line_chooses_one_thread_for_a_toy_run_and_keeps_threads_as_given(
    tmp_path, monkeypatch
):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    common = [
        "train",
        "--preset",
        "toy2d-flow",
        "train.steps=1",
        "train.model.width=16",
        "train.batch_size=16",
        "train.progress=false",
    ]
    torch.set_num_threads(2)
    assert main([*common, f"train.run_dir={tmp_path / 'auto'}"]) == 0
    assert torch.get_num_threads() == 1
    assert "1 intra-op CPU thread(s)" in (tmp_path / "auto" / "log.txt").read_text()
    assert threads.get_policy() == "fixed"  # main() leaves the caller's policy as it was
    torch.set_num_threads(1)
    assert main(["--threads", "2", *common, f"train.run_dir={tmp_path / 'given'}"]) == 0
    assert torch.get_num_threads() == 2
    assert "intra-op" not in (tmp_path / "given" / "log.txt").read_text()


def test_a_closed_pipe_is_quiet_and_not_an_internal_error():
    read, write = os.pipe()
    os.close(read)  # `interpolant info | head` after head has exited
    proc = subprocess.run(
        [sys.executable, "-m", "interpolant.cli", "info"],
        stdout=write,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(write)
    assert proc.returncode == 141, proc.stderr
    assert proc.stderr == ""
