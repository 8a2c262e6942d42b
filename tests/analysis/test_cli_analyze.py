"""``interpolant analyze`` on a tiny trained run: every analysis writes its JSON and plot."""

from __future__ import annotations

import json

import pytest
import torch

from interpolant.cli import main

TINY = [
    "data.n=500",
    "train.steps=20",
    "train.batch_size=128",
    "train.model.width=32",
    "train.model.depth=1",
    "train.checkpoint_every=20",
    "train.progress=false",
    "train.device=cpu",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("analyze") / "run"
    assert main(["train", "--preset", "toy2d-flow", "--run-dir", str(path), *TINY]) == 0
    return path


@pytest.mark.parametrize("what", ["hallucination", "intrinsic-dim", "fp-residual", "jacobian-rank"])
def test_analyze_writes_json_and_plot(run_dir, what, capsys) -> None:
    assert (
        main(["analyze", str(run_dir), "--what", what, "--n", "16", "--times", "0.3", "0.7"]) == 0
    )
    record = json.loads((run_dir / "analysis" / f"{what}.json").read_text())
    assert record["what"] == what
    assert (run_dir / "analysis" / f"{what}.png").is_file()
    if what == "jacobian-rank":
        assert all(0 <= r <= 2 for r in record["mean_rank"])
    if what == "hallucination":
        assert len(record["scores"]) == 16


def test_analyze_bad_input_is_one_line(run_dir, capsys) -> None:
    assert main(["analyze", str(run_dir), "--what", "intrinsic-dim", "--time", "1.5"]) == 2
    assert "outside the path's noise range" in capsys.readouterr().err
