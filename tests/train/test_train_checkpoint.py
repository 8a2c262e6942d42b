"""Checkpoints: atomic safetensors + JSON round trip, refusal of bad checkpoints, fallback."""

import json
import logging

import pytest
import torch
from safetensors import safe_open
from train_helpers import assert_same, make_config, make_data, make_model, make_objective, state_of

from interpolant.train import CheckpointError, Trainer, list_checkpoints
from interpolant.train.checkpoint import LATEST, STATE_FILE


def _trainer(run_dir, model=None, **changes):
    x, y = make_data()
    cfg = make_config(run_dir, **changes)
    return Trainer(model or make_model(), make_objective(), x, cfg, y, network={"model": "tiny"})


def test_round_trip_restores_model_ema_optimizer_and_rng(tmp_path, monkeypatch):
    first = _trainer(tmp_path, steps=4).run()
    saved = state_of(first)
    rng_after = torch.get_rng_state()
    root = tmp_path / "checkpoints"
    assert [s for s, _ in list_checkpoints(root)] == [4]
    assert (root / LATEST).read_text().strip() == "step-00000004"
    files = sorted(p.name for p in (root / "step-00000004").iterdir())
    assert files == ["ema.safetensors", "model.safetensors", "optimizer.safetensors", STATE_FILE]
    state = json.loads((root / "step-00000004" / STATE_FILE).read_text())
    assert state["step"] == 4 and state["config"]["steps"] == 4 and state["data"]["n"] == 40
    with safe_open(str(root / "step-00000004" / "optimizer.safetensors"), "pt") as f:
        assert "net.inp.weight.exp_avg_sq" in set(f.keys())

    # Loading must never unpickle: make torch.load fail loudly.
    def no_pickles(*args, **kwargs):
        raise AssertionError("torch.load was called on checkpoint data")

    monkeypatch.setattr(torch, "load", no_pickles)
    torch.manual_seed(12345)  # scramble the global RNG; resume must restore it
    second = _trainer(tmp_path, model=make_model(seed=7), steps=4)  # different init
    assert second.run().step == 4  # resumed at the end: nothing left to do
    assert_same(state_of(second), saved)
    assert torch.equal(torch.get_rng_state(), rng_after)


def test_truncated_file_is_refused_naming_it(tmp_path):
    _trainer(tmp_path, steps=4).run()
    model_file = tmp_path / "checkpoints" / "step-00000004" / "model.safetensors"
    model_file.write_bytes(model_file.read_bytes()[:-50])
    with pytest.raises(CheckpointError, match=r"model\.safetensors is truncated"):
        _trainer(tmp_path, steps=8).run()


def test_flipped_byte_is_refused(tmp_path):
    _trainer(tmp_path, steps=4).run()
    ema_file = tmp_path / "checkpoints" / "step-00000004" / "ema.safetensors"
    raw = bytearray(ema_file.read_bytes())
    raw[-3] ^= 0xFF
    ema_file.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"ema\.safetensors is corrupt"):
        _trainer(tmp_path, steps=8).run()


def test_shape_mismatch_is_refused_naming_the_tensor(tmp_path):
    _trainer(tmp_path, steps=4).run()
    with pytest.raises(
        CheckpointError,
        match=r"model\.safetensors does not fit the model: shape mismatch .*"
        r"net\.inp\.weight: \(16, 3\) in checkpoint, \(8, 3\) in model",
    ):
        _trainer(tmp_path, model=make_model(width=8), steps=8).run()


def test_missing_keys_are_refused(tmp_path):
    _trainer(tmp_path, steps=4).run()
    model = make_model()
    model.net.extra = torch.nn.Linear(2, 2)
    with pytest.raises(CheckpointError, match=r"missing keys \['net\.extra\.bias'"):
        _trainer(tmp_path, model=model, steps=8).run()


def test_other_network_config_is_refused(tmp_path):
    _trainer(tmp_path, steps=4).run()
    x, y = make_data()
    other = Trainer(
        make_model(),
        make_objective(),
        x,
        make_config(tmp_path, steps=8),
        y,
        network={"model": "bigger"},
    )
    with pytest.raises(CheckpointError, match="another network: model: 'tiny' in checkpoint"):
        other.run()


def test_incomplete_newest_falls_back_with_a_log_line(tmp_path, caplog):
    _trainer(tmp_path, steps=8).run()  # checkpoints at 4 and 8
    root = tmp_path / "checkpoints"
    (root / "step-00000008" / STATE_FILE).unlink()  # as if the write never finished
    (root / ".tmp-step-00000012-999").mkdir()  # a killed write
    with caplog.at_level(logging.INFO, logger="interpolant.train"):
        resumed = _trainer(tmp_path, steps=4)
        resumed.run()
    assert resumed.step == 4
    text = caplog.text
    assert "removed incomplete checkpoint" in text and ".tmp-step-00000012-999" in text
    assert "skipping incomplete checkpoint" in text and "step-00000008" in text
    assert "resumed from" in text and "step-00000004" in text
    assert not (root / ".tmp-step-00000012-999").exists()


def test_keep_checkpoints_prunes_the_oldest(tmp_path):
    _trainer(tmp_path, steps=8, checkpoint_every=2, keep_checkpoints=2).run()
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [6, 8]


def test_fresh_start_refuses_a_run_dir_with_checkpoints(tmp_path):
    _trainer(tmp_path, steps=4).run()
    with pytest.raises(
        FileExistsError, match=r"newest step-00000004\) and config\.resume is False"
    ):
        _trainer(tmp_path, steps=4, resume=False).run()
