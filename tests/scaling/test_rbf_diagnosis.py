"""Seed 18's plateau, pinned (benchmarks/steering.py measures it at K = 4, 16, 64): with a
reward of x0_hat that grows as the noise falls, every RBF step but the last accepts early (a
candidate beats the best reward so far), so most of the budget rolls over to the last step,
where the mode is already chosen; budget forcing without rollover reaches a higher reward."""

from __future__ import annotations

import torch

from interpolant.data.oracles import ring2d
from interpolant.paths import Linear
from interpolant.scaling import LinearReward
from interpolant.scaling.rbf import RBF_SAMPLER, rbf_sample

torch.set_num_threads(1)


def test_rbf_rolls_its_budget_over_to_the_last_step() -> None:
    mix, reward = ring2d(), LinearReward([1.0, 0.0])
    model, budget = mix.model(Linear()), 80
    spec = RBF_SAMPLER.replace(steps=10, seed=0)
    out = rbf_sample(model, reward, budget, (2,), spec, n=64, n_init=budget // 4)
    early = torch.stack(out.rolled_over[:-1]).double().mean()
    assert float(early) > 0.9
    assert float(out.used[-1].double().mean() / budget) > 0.5
    forced = rbf_sample(model, reward, budget, (2,), spec, n=64, n_init=budget // 4, rollover=False)
    assert float(reward(forced.x).mean()) > float(reward(out.x).mean()) + 0.2
