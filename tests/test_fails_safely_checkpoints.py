"""Checkpoints that do not belong to the run are refused naming what differs, and write
nothing; a corrupt newest checkpoint is skipped for the previous one, saying so (issue 19)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "train"))
from train_helpers import make_config, make_data, make_model, make_objective

from interpolant import api
from interpolant.cli.main import main
from interpolant.train import CheckpointError, Trainer
from interpolant.train import checkpoint as ckpt

SMALL = ["train.model.width=16", "train.batch_size=32", "train.progress=false"]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _run(tmp_path: Path, name: str, preset: str, *extra: str) -> Path:
    run_dir = tmp_path / name
    api.train(preset, [*SMALL, "train.steps=2", f"train.run_dir={run_dir}", *extra], plots=False)
    return run_dir


def _newest(run_dir: Path) -> Path:
    return ckpt.list_checkpoints(run_dir / "checkpoints")[-1][1]


def test_sample_refuses_another_runs_checkpoint_naming_the_keys_and_writes_nothing(
    tmp_path, capsys
):
    moons = _run(tmp_path, "moons", "toy2d-flow")
    digits = _run(tmp_path, "digits", "digits-edm")
    out = tmp_path / "out"
    argv = [
        "sample",
        str(digits),
        "--checkpoint",
        str(_newest(moons)),
        "--out",
        str(out),
        "-n",
        "4",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "was written for another network" in err
    assert f"train.model.dim: 2 in checkpoint, 64 in {digits}" in err
    assert "train.path.name: 'linear' in checkpoint, 'edm' in" in err
    assert "train.predicts: 'velocity' in checkpoint, 'x0' in" in err
    assert not out.exists()
    # The run's own checkpoint, named explicitly, is accepted.
    assert main([*argv[:3], str(_newest(digits)), *argv[4:]]) == 0
    assert (out / "samples.npz").is_file()


def test_sample_refuses_a_checkpoint_of_the_same_network_on_data_of_another_shape(tmp_path):
    # Same MLP (dim 2) on two data sets of different shape is impossible; same network spec with
    # another data description is: a run whose newest state records another data shape.
    first = _run(tmp_path, "first", "toy2d-flow")
    second = _run(tmp_path, "second", "toy2d-flow")
    state_file = _newest(second) / ckpt.STATE_FILE
    state = json.loads(state_file.read_text())
    state["data"]["shape"] = [1, 2]
    state_file.write_text(json.dumps(state))  # only its data record is read for the comparison
    with pytest.raises(
        CheckpointError,
        match=r"trained on other data: data\.shape: \[2\] in "
        r"checkpoint, \[1, 2\] in .*second",
    ):
        api.load_run(second, checkpoint=_newest(first))


def test_resume_refuses_data_of_another_shape_naming_the_key(tmp_path):
    x, y = make_data()
    Trainer(make_model(), make_objective(), x, make_config(tmp_path, steps=4), y).run()
    later = Trainer(make_model(), make_objective(), x.view(40, 1, 2), make_config(tmp_path), y)
    with pytest.raises(CheckpointError, match=r"data\.shape: \[2\] in checkpoint, \[1, 2\] now"):
        later.run()


def test_resume_refuses_another_network_naming_the_dotted_key(tmp_path):
    run_dir = _run(tmp_path, "run", "toy2d-flow")
    with pytest.raises(CheckpointError, match=r"model\.width: 16 in checkpoint, 24 now"):
        api.train(
            "toy2d-flow",
            [*SMALL, "train.steps=3", f"train.run_dir={run_dir}", "train.model.width=24"],
            plots=False,
        )


def _truncate(path: Path) -> Path:
    file = path / "model.safetensors"
    file.write_bytes(file.read_bytes()[:-40])
    return file


def test_a_truncated_newest_checkpoint_is_skipped_for_sample_and_resume(tmp_path, capsys):
    run_dir = _run(tmp_path, "run", "toy2d-flow", "train.checkpoint_every=1")
    older, newest = [p for _, p in ckpt.list_checkpoints(run_dir / "checkpoints")]
    _truncate(newest)

    loaded = api.load_run(run_dir)
    assert loaded.checkpoint == older and loaded.step == 1
    err = capsys.readouterr().err
    assert f"skipping corrupt checkpoint {newest}" in err and "truncated" in err
    assert f"using {older} instead" in err

    api.train(
        "toy2d-flow",
        [*SMALL, "train.steps=3", f"train.run_dir={run_dir}", "train.checkpoint_every=1"],
        plots=False,
    )
    log = (run_dir / "log.txt").read_text()
    assert f"skipping corrupt checkpoint {newest}" in log and f"using {older} instead" in log
    assert f"resumed from {older} at step 1" in log
    assert [s for s, _ in ckpt.list_checkpoints(run_dir / "checkpoints")][-1] == 3
    ckpt.verify(run_dir / "checkpoints" / ckpt.checkpoint_name(2))  # step 2 was rewritten


def test_when_every_checkpoint_is_corrupt_the_error_names_them(tmp_path):
    run_dir = _run(tmp_path, "run", "toy2d-flow", "train.checkpoint_every=1")
    files = [_truncate(p) for _, p in ckpt.list_checkpoints(run_dir / "checkpoints")]
    with pytest.raises(CheckpointError, match="no intact checkpoint") as caught:
        api.load_run(run_dir)
    assert all(str(f) in str(caught.value) for f in files)


def test_eval_refuses_samples_of_another_shape_and_writes_nothing(tmp_path, capsys):
    import numpy as np

    samples = tmp_path / "samples.npz"
    meta = {"data_config": {"name": "digits"}}
    np.savez(samples, samples=np.zeros((8, 2), np.float32), meta=json.dumps(meta))
    assert main(["eval", str(samples)]) == 2
    err = capsys.readouterr().err
    assert "(2,) per sample but the reference data (1, 8, 8)" in err
    assert not (tmp_path / "metrics.json").exists()
