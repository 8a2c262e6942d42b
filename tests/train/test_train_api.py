"""train(config): building from a config, callbacks, precision, bad input."""

import json

import pytest
import torch
from train_helpers import make_config, make_data, make_model, make_objective

from interpolant.train import CheckpointError, TrainConfig, Trainer, train

NET = {"name": "mlp", "dim": 2, "width": 16, "depth": 1}


def _config(run_dir, **changes):
    base = dict(
        model=NET,
        path={"name": "linear"},
        predicts="velocity",
        objective={"target": "velocity"},
        run_dir=str(run_dir),
        device="cpu",
        steps=40,
        batch_size=16,
        lr=1e-2,
        log_every=10,
        checkpoint_every=20,
        progress=False,
        ema_halflife_kimg=0.1,
    )
    base.update(changes)
    return base


def test_train_from_a_config_dict_learns_and_logs(tmp_path):
    x, _ = make_data(n=64)
    seen = {"samples": [], "checkpoints": []}

    def sample_fn(model, step, run_dir):
        assert not model.training and run_dir == tmp_path
        seen["samples"].append((step, {k: v.clone() for k, v in model.named_parameters()}))

    trainer = train(
        _config(tmp_path, sample_every=20),
        x,
        data_info={"mean": [0.0, 1.0]},
        sample_fn=sample_fn,
        on_checkpoint=lambda s, p: seen["checkpoints"].append((s, p.name)),
    )
    rows = [json.loads(r) for r in (tmp_path / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 20, 30, 40]
    assert set(rows[0]) >= {"step", "loss", "lr", "grad_norm", "samples_per_s", "time_s"}
    assert rows[-1]["loss"] < 0.9 * rows[0]["loss"]  # it learns
    assert seen["checkpoints"] == [(20, "step-00000020"), (40, "step-00000040")]
    # The sampling copy carries the EMA weights, not the raw ones.
    assert [s for s, _ in seen["samples"]] == [20, 40]
    for name, value in seen["samples"][-1][1].items():
        assert torch.equal(value, trainer.ema.shadow[name])
    assert not torch.equal(
        trainer.ema.shadow["net.fc_in.weight"],
        dict(trainer.module.named_parameters())["net.fc_in.weight"],
    )
    assert TrainConfig.from_json(tmp_path / "config.json") == TrainConfig.from_dict(
        _config(tmp_path, sample_every=20)
    )
    state = json.loads((tmp_path / "checkpoints" / "step-00000040" / "state.json").read_text())
    assert state["network"]["model"] == NET and state["data"]["info"] == {"mean": [0.0, 1.0]}


def test_resume_with_another_network_config_is_refused(tmp_path):
    x, _ = make_data()
    train(_config(tmp_path, steps=2), x)
    with pytest.raises(
        CheckpointError, match=r"another network: model\.width: 16 in checkpoint, 32 now"
    ):
        train(_config(tmp_path, steps=4, model={**NET, "width": 32}), x)


def test_bf16_autocast_runs_the_network_in_bfloat16(tmp_path):
    x, y = make_data()
    dtypes = []
    model = make_model()
    model.net.inp.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    cfg = make_config(tmp_path, steps=2, precision="bf16", resume=False)
    trainer = Trainer(model, make_objective(), x, cfg, y).run()
    assert dtypes and set(dtypes) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in trainer.module.parameters())  # master weights


def test_bad_arguments_are_refused(tmp_path):
    x, y = make_data()
    cfg = make_config(tmp_path)
    with pytest.raises(ValueError, match="data must be a floating tensor"):
        Trainer(make_model(), make_objective(), x.long(), cfg)
    with pytest.raises(ValueError, match="labels must be a tensor with 40 rows"):
        Trainer(make_model(), make_objective(), x, cfg, y[:5])
    with pytest.raises(TypeError, match="objective needs a loss"):
        Trainer(make_model(), object(), x, cfg)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="precondition wraps an x0"):
        train(_config(tmp_path, precondition=0.5), x)
    with pytest.raises(ValueError, match=r"config\.model needs a 'name'"):
        train(_config(tmp_path, model={"dim": 2}), x)


@pytest.mark.slow
def test_compiled_training_matches_eager(tmp_path):
    x, y = make_data()
    states = []
    for compiled in (False, True):
        model = make_model()
        model.net.drop.p = 0.0  # compiled dropout draws from another RNG stream than eager
        cfg = make_config(tmp_path / str(compiled), steps=4, compile=compiled, resume=False)
        trainer = Trainer(model, make_objective(), x, cfg, y).run()
        states.append({k: v.detach().clone() for k, v in trainer.module.state_dict().items()})
    for name, value in states[0].items():
        torch.testing.assert_close(states[1][name], value, atol=1e-5, rtol=1e-4, msg=name)
