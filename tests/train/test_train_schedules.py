"""Learning-rate schedules against their closed forms."""

import math

import pytest

from interpolant.train import TrainConfig, lr_at, lr_from_config


def test_linear_warmup_then_constant():
    assert [lr_at(s, 2.0, "constant", warmup_steps=4) for s in range(6)] == [
        0.5,
        1.0,
        1.5,
        2.0,
        2.0,
        2.0,
    ]
    assert lr_at(0, 2.0) == 2.0


def test_cosine_end_points_and_midpoint():
    kw = dict(schedule="cosine", warmup_steps=10, total_steps=110, min_ratio=0.1)
    assert lr_at(9, 1.0, **kw) == pytest.approx(1.0)  # end of warm-up
    assert lr_at(60, 1.0, **kw) == pytest.approx(0.1 + 0.9 * 0.5)  # half way: cos(pi/2) = 0
    assert lr_at(110, 1.0, **kw) == pytest.approx(0.1)
    assert lr_at(500, 1.0, **kw) == pytest.approx(0.1)  # clamped after the end
    p = (35 - 10) / 100
    assert lr_at(35, 1.0, **kw) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * p)))


def test_inverse_sqrt_is_flat_then_decays_as_one_over_sqrt():
    kw = dict(schedule="inverse_sqrt", decay_steps=100)
    assert lr_at(50, 1.0, **kw) == 1.0
    assert lr_at(100, 1.0, **kw) == 1.0
    assert lr_at(400, 1.0, **kw) == pytest.approx(0.5)
    assert lr_at(900, 3.0, **kw) == pytest.approx(1.0)


def test_config_wiring_and_errors():
    cfg = TrainConfig(lr=0.1, lr_schedule="cosine", steps=20, lr_warmup_steps=0)
    assert lr_from_config(cfg, 10) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="schedule must be one of"):
        lr_at(0, 1.0, "step")
    with pytest.raises(ValueError, match="needs decay_steps or total_steps"):
        lr_at(0, 1.0, "cosine")
