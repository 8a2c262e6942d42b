"""train.tensorboard: the event file holds stats.jsonl's scalars, a resumed run replaces the
steps after its checkpoint, and a missing package is a MissingDependencyError."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
from train_helpers import make_config, make_data, make_model, make_objective

from interpolant.errors import MissingDependencyError
from interpolant.train import checkpoint as ckpt
from interpolant.train import train
from interpolant.train.tensorboard import LOG_DIR


def _scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    acc = accumulator.EventAccumulator(str(run_dir / LOG_DIR), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _run(run_dir, **changes):
    x, labels = make_data()
    cfg = make_config(run_dir, tensorboard=True, **changes)
    return train(cfg, x, labels, model=make_model(), objective=make_objective())


def test_event_file_holds_the_stats_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    _run(tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "stats.jsonl").read_text().splitlines()]
    scalars = _scalars(tmp_path)
    assert {f"train/{k}" for k in rows[0] if k != "step"} == set(scalars)
    for key in ("loss", "lr", "grad_norm", "kimg", "ema_beta"):
        logged = scalars[f"train/{key}"]
        assert [step for step, _ in logged] == [row["step"] for row in rows]
        # TensorBoard stores float32.
        assert [v for _, v in logged] == pytest.approx([row[key] for row in rows], rel=1e-6)


def test_resumed_run_replaces_the_steps_after_its_checkpoint(tmp_path):
    pytest.importorskip("tensorboard")
    _run(tmp_path)
    first = dict(_scalars(tmp_path)["train/loss"])
    # Lose the last checkpoint (step 8): the rerun resumes at 4 and logs 6 and 8 again.
    newest = ckpt.list_checkpoints(tmp_path / "checkpoints")[-1][1]
    shutil.rmtree(newest)
    _run(tmp_path)
    logged = _scalars(tmp_path)["train/loss"]
    assert [step for step, _ in logged] == [2, 4, 6, 8]  # no duplicates
    assert dict(logged) == pytest.approx(first, rel=1e-6)  # resume is exact


def test_missing_tensorboard_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(MissingDependencyError, match=r"interpolant\[tensorboard\]"):
        _run(tmp_path)
    assert not (tmp_path / "checkpoints").exists()  # refused before any training
