"""``interpolant inverse`` end to end with the exact digits-mixture prior (no training)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from interpolant.cli import main


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_inverse_beats_the_pseudo_inverse_and_writes_its_files(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["inverse", "digits-mixture", "--operator", "inpaint-box", "--solver", "dps"]
    assert main([*args, "--nfe", "30", "--input", "test:3", "--out", str(out)]) == 0
    meta = json.loads((out / "inverse.json").read_text())
    assert meta["n"] == 3 and meta["psnr"] > meta["psnr_pinv"]
    assert meta["nfe"] == 30  # DPS: one network call per step, its gradient included
    arrays = np.load(out / "inverse.npz")
    assert arrays["reconstruction"].shape == arrays["truth"].shape == (3, 1, 8, 8)
    assert (out / "inverse.png").exists()
    assert "PSNR" in capsys.readouterr().out


def test_inverse_reads_an_array_and_rejects_bad_input(tmp_path, capsys):
    from interpolant.data import load_dataset

    test = load_dataset("digits", split="test")
    array = test.info.normalizer.inverse(test.x[:2]).numpy()
    np.save(tmp_path / "x.npy", array)
    out = tmp_path / "out"
    args = ["inverse", "digits-mixture", "--solver", "pinv", "--operator", "sr:2"]
    assert main([*args, "--input", str(tmp_path / "x.npy"), "--out", str(out)]) == 0
    assert np.allclose(np.load(out / "inverse.npz")["truth"], array)
    np.save(tmp_path / "bad.npy", np.zeros((2, 10)))
    capsys.readouterr()
    assert main([*args, "--input", str(tmp_path / "bad.npy"), "--out", str(out)]) == 2
    assert "has shape (2, 10)" in capsys.readouterr().err
    assert main(["inverse", "digits-mixture", "--operator", "warp:3", "--out", str(out)]) == 2
    assert main([*args, "--option", "zeta", "--out", str(out)]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
