"""EMA decay formulas against hand computations, and EDM2 post-hoc reconstruction."""

import numpy as np
import pytest
import torch
from torch import nn

from interpolant.train import (
    EMA,
    gamma_to_sigma_rel,
    halflife_beta,
    posthoc_coefficients,
    posthoc_reconstruct,
    power_beta,
    sigma_rel_to_gamma,
)


def test_halflife_beta_by_hand():
    # First update: no images seen, half-life 0, so the EMA copies the weights.
    assert halflife_beta(0, 16, 500.0, 0.05) == 0.0
    # Ramp-up: after 10 updates of 4 images the half-life is min(500000, 0.05 * 40) = 2 images.
    assert halflife_beta(10, 4, 500.0, 0.05) == pytest.approx(0.5 ** (4 / 2))
    # Without ramp-up: beta = 0.5 ** (batch / (1000 * kimg)).
    assert halflife_beta(0, 100, 1.0, None) == pytest.approx(0.5**0.1)
    # Ramp-up ends when rampup * nimg exceeds the half-life.
    assert halflife_beta(10**6, 100, 1.0, 0.05) == pytest.approx(0.5**0.1)


def test_power_sigma_rel_matches_edm2_values():
    # EDM2 (Karras et al. 2024), sec. 3.1: sigma_rel 0.05 and 0.10 are gamma 16.97 and 6.94.
    assert sigma_rel_to_gamma(0.05) == pytest.approx(16.97, abs=5e-3)
    assert sigma_rel_to_gamma(0.10) == pytest.approx(6.94, abs=5e-3)
    for gamma in (0.5, 3.0, 6.94, 40.0):
        assert sigma_rel_to_gamma(gamma_to_sigma_rel(gamma)) == pytest.approx(gamma, rel=1e-10)
    with pytest.raises(ValueError, match="sigma_rel"):
        sigma_rel_to_gamma(0.5)


def _scalar_module(value: float) -> nn.Module:
    m = nn.Module()
    m.w = nn.Parameter(torch.tensor([value], dtype=torch.float64))
    return m


@pytest.mark.parametrize("kind", ["halflife", "power"])
def test_ema_class_follows_the_recursion(kind):
    values = [1.0, -2.0, 0.5, 3.0, 3.0, -1.0, 0.25]
    module = _scalar_module(values[0])
    ema = EMA(module, kind, batch_size=8, halflife_kimg=0.02, rampup_ratio=0.5, sigma_rel=0.1)
    expected = 123.0  # anything: the first update has beta = 0
    for step, v in enumerate(values):
        module.w.data.fill_(v)
        beta = ema.update(module, step)
        if kind == "halflife":
            h = min(20.0, 0.5 * 8 * step)
            assert beta == (0.5 ** (8 / max(h, 1e-8)))
        else:
            assert beta == (1 - 1 / (step + 1)) ** (sigma_rel_to_gamma(0.1) + 1)
        expected = beta * expected + (1 - beta) * v
        assert ema.shadow["w"].item() == pytest.approx(expected, rel=1e-12)
    copy = _scalar_module(0.0)
    ema.copy_to(copy)
    assert copy.w.item() == ema.shadow["w"].item()


def test_power_ema_equals_its_closed_form_weights():
    # Unrolling beta_t = (1 - 1/t)^(g+1) gives weights (i^(g+1) - (i-1)^(g+1)) / T^(g+1).
    gamma, steps = 2.5, 30
    rng = np.random.default_rng(1)
    theta = rng.standard_normal(steps)
    ema = 0.0
    for s in range(steps):
        b = power_beta(s, gamma)
        ema = b * ema + (1 - b) * theta[s]
    i = np.arange(1, steps + 1, dtype=np.float64)
    weights = (i ** (gamma + 1) - (i - 1) ** (gamma + 1)) / steps ** (gamma + 1)
    assert weights.sum() == pytest.approx(1.0)
    assert ema == pytest.approx(float(weights @ theta), rel=1e-12)


def _track(theta: np.ndarray, gamma: float, every: int):
    ema, snaps = np.zeros_like(theta[0]), []
    for s in range(len(theta)):
        b = power_beta(s, gamma)
        ema = b * ema + (1 - b) * theta[s]
        if (s + 1) % every == 0:
            snaps.append((s + 1, gamma, {"w": torch.tensor(ema)}))
    return ema, snaps


def test_posthoc_reconstruction_of_an_unseen_sigma_rel():
    rng = np.random.default_rng(0)
    steps = 2000
    t = np.arange(steps)
    theta = np.cumsum(rng.standard_normal((steps, 4)), axis=0) + 3 * np.sin(t / 200)[:, None]
    _, snaps_a = _track(theta, sigma_rel_to_gamma(0.05), 100)
    _, snaps_b = _track(theta, sigma_rel_to_gamma(0.10), 100)
    snaps = snaps_a + snaps_b
    for target in (0.07, 0.13):
        direct, _ = _track(theta, sigma_rel_to_gamma(target), steps)
        rebuilt = posthoc_reconstruct(snaps, target)["w"].numpy()
        spread = np.abs(direct - snaps_a[-1][2]["w"].numpy()).max()  # what a wrong EMA costs
        assert spread > 1.0
        assert np.abs(rebuilt - direct).max() < 0.01 * spread
    # A stored profile is reproduced exactly, also at an earlier time.
    x = posthoc_coefficients([500, 1000, 500, 1000], [3.0, 3.0, 8.0, 8.0], 500, 8.0)
    assert np.allclose(x, [0, 0, 1, 0], atol=1e-8)
    with pytest.raises(ValueError, match=">= 1"):
        posthoc_coefficients([0], [3.0], 1, 3.0)


def test_trainer_snapshots_reconstruct_the_power_ema(tmp_path):
    from train_helpers import make_config, make_data, make_model, make_objective

    from interpolant.train import Trainer
    from interpolant.train.posthoc import posthoc_ema, read_snapshots

    x, y = make_data()
    cfg = make_config(
        tmp_path,
        steps=60,
        ema="power",
        ema_std=0.07,
        ema_snapshot_every=5,
        ema_posthoc_stds=(0.05, 0.10),
        checkpoint_every=60,
        log_every=60,
    )
    trainer = Trainer(make_model(), make_objective(), x, cfg, y).run()
    snaps = read_snapshots(tmp_path)
    assert sorted({s for s, _, _ in snaps}) == list(range(5, 61, 5)) and len(snaps) == 24
    tracked = {k: v.shadow for k, v in trainer.posthoc.emas.items()}
    # A stored sigma_rel at the last snapshot is returned as stored.
    stored = posthoc_ema(tmp_path, 0.10)
    for name, value in tracked[0.10].items():
        torch.testing.assert_close(stored[name], value, atol=1e-5, rtol=0)
    # An unseen one (0.07, tracked directly as the main EMA) is rebuilt far better than either
    # stored track approximates it.
    rebuilt = posthoc_ema(tmp_path, 0.07)
    for name, direct in trainer.ema.shadow.items():
        err = (rebuilt[name] - direct).abs().max()
        nearest = min((tracked[s][name] - direct).abs().max() for s in (0.05, 0.10))
        assert err < 0.15 * nearest, name  # measured: 0.02 to 0.08
