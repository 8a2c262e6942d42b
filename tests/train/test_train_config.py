"""TrainConfig: JSON round trip, refusal of unknown keys and bad values, batch arithmetic."""

import json

import pytest

from interpolant.train import TrainConfig, as_config


def test_json_round_trip_is_exact(tmp_path):
    cfg = TrainConfig(
        model={"name": "mlp", "dim": 2, "width": 32},
        objective={"target": "velocity", "time": "logit-normal"},
        steps=123,
        betas=(0.8, 0.95),
        grad_clip=None,
        lr_schedule="cosine",
        noise_block=4,
        batch_per_gpu=8,
    )
    again = TrainConfig.from_json(cfg.to_json())
    assert again == cfg and again.betas == (0.8, 0.95)
    cfg.to_json(tmp_path / "c.json")
    assert TrainConfig.from_json(tmp_path / "c.json") == cfg
    assert json.loads(cfg.to_json())["betas"] == [0.8, 0.95]


def test_unknown_key_names_the_valid_keys():
    with pytest.raises(ValueError, match="unknown config keys \\['stepz'\\]") as err:
        TrainConfig.from_dict({"stepz": 3})
    assert "'steps'" in str(err.value) and "'batch_per_gpu'" in str(err.value)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"steps": "10"}, "config key 'steps' expects"),
        ({"lr": True}, "config key 'lr' expects"),
        ({"steps": 0}, "steps must be a positive int"),
        ({"lr_schedule": "linear"}, "lr_schedule must be one of"),
        ({"ema": "karras"}, "ema must be one of"),
        ({"precision": "fp4"}, "precision must be one of"),
        ({"betas": [0.9, 1.0]}, "betas must be two numbers"),
        ({"grad_clip": 0.0}, "grad_clip must be > 0"),
        ({"ema_std": 0.3}, "ema_std"),
    ],
)
def test_bad_values_are_refused_with_the_field_name(changes, match):
    with pytest.raises((TypeError, ValueError), match=match):
        TrainConfig.from_dict(changes)


def test_rounds_keep_the_global_batch():
    cfg = TrainConfig(batch_size=16, batch_per_gpu=4)
    assert cfg.rounds(1) == (4, 4)
    assert cfg.rounds(2) == (4, 2)
    assert cfg.rounds(4) == (4, 1)
    assert TrainConfig(batch_size=16).rounds(2) == (8, 1)  # default: no accumulation
    assert TrainConfig(batch_size=16, batch_per_gpu=32).rounds(1) == (16, 1)  # capped
    for world, b in ((3, None), (1, 5)):
        with pytest.raises(ValueError, match=r"not divisible|not a multiple"):
            TrainConfig(batch_size=16, batch_per_gpu=b).rounds(world)
    with pytest.raises(ValueError, match="noise_block"):
        TrainConfig(batch_size=16, batch_per_gpu=4, noise_block=3).rounds(1)


def test_as_config_accepts_dicts_and_replace_validates():
    cfg = as_config({"steps": 5})
    assert cfg.steps == 5 and cfg.replace(lr=0.5).lr == 0.5
    with pytest.raises(ValueError, match="unknown config keys"):
        cfg.replace(learning_rate=0.5)
