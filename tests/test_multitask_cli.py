"""``interpolant multitask``: trains, resumes, writes joint samples; bad input is one line."""

import numpy as np
import pytest
import torch

from interpolant.cli.main import main

torch.set_num_threads(1)
TINY = ["--steps", "4", "--width", "16", "--depth", "1", "--diffusion-steps", "10"]


def test_trains_resumes_and_writes_joint_samples(tmp_path, capsys):
    run = tmp_path / "mt"
    assert main(["multitask", "--run-dir", str(run), *TINY, "--n", "30"]) == 0
    out = capsys.readouterr().out
    assert "trained 4 steps" in out and "300 network evaluations" in out
    with np.load(run / "samples" / "samples.npz") as z:
        assert z["samples"].shape == (30, 1, 8, 8) and z["labels"].shape == (30,)
        assert set(z["labels"].tolist()) <= set(range(10))
    assert (run / "checkpoints" / "step-00000004").is_dir() and (
        run / "samples" / "samples.png"
    ).is_file()
    # Resuming with more steps continues; another architecture in the same folder is refused.
    assert main(["multitask", "--run-dir", str(run), *TINY[2:], "--steps", "6", "--n", "0"]) == 0
    assert "trained 6 steps" in capsys.readouterr().out
    bad = ["multitask", "--run-dir", str(run), "--steps", "8", "--width", "32", "--depth", "1"]
    assert main([*bad, "--diffusion-steps", "10", "--n", "0"]) == 2
    assert "network" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--weights", "late"], "offset schedule"), (["--steps", "0"], "--steps >= 1")],
)
def test_bad_options_are_one_line_errors(tmp_path, capsys, args, message):
    assert main(["multitask", "--run-dir", str(tmp_path / "x"), *TINY[2:], *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
