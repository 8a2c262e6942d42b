"""Reward-conditioned model: the null condition, condition dropout, and a short training run
whose CFG samples move with the target reward."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant import paths, sample
from interpolant.guidance import CFG, RewardMLP, train_reward_model


def test_null_reward_none_and_nan_agree():
    torch.manual_seed(0)
    net = RewardMLP(3, width=16, depth=1, dropout_prob=0.5).eval()
    torch.nn.init.normal_(net.fc_out.weight)
    x, t = torch.randn(4, 3), torch.rand(4)
    r = torch.tensor([0.3, math.nan, -1.0, math.nan])
    out, null = net(x, t, reward=r), net(x, t)
    torch.testing.assert_close(out[[1, 3]], null[[1, 3]])
    assert not torch.allclose(out[[0, 2]], null[[0, 2]])
    # Dropout only in training mode, and it replaces rewards by the null embedding.
    net.train()
    torch.manual_seed(1)
    dropped = net(x, t, reward=torch.tensor([0.3, 0.5, -1.0, 2.0]))
    kept = [torch.allclose(dropped[i], null[i]) for i in range(4)]
    assert any(kept)
    with pytest.raises(ValueError, match="reward must have 4 entries"):
        net(x, t, reward=torch.zeros(3))


def test_trained_model_follows_the_target_reward(tmp_path):
    # Data on a line x = (u, 0.5 u) + noise, reward r = u: conditioning on r moves the samples.
    g = torch.Generator().manual_seed(0)
    u = torch.randn(2000, generator=g)
    x = torch.stack([u, 0.5 * u], 1) + 0.05 * torch.randn(2000, 2, generator=g)
    model = train_reward_model(
        x,
        u,
        paths.VP(),
        steps=300,
        width=32,
        depth=2,
        batch_size=128,
        run_dir=str(tmp_path),
        seed=0,
    )
    noise = torch.randn(400, 2, generator=torch.Generator().manual_seed(1))
    means = {}
    for target in (-1.0, 1.0):
        cond = {"reward": torch.full((400,), target)}
        with torch.no_grad():
            out = sample(
                model, noise, nfe=20, cond=cond, hooks=[CFG(1.5, null_cond={"reward": None})]
            ).x
        means[target] = float(out[:, 0].mean())
    assert means[1.0] - means[-1.0] > 1.0
    assert means[-1.0] < -0.4
