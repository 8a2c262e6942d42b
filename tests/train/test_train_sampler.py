"""The step sampler: epochs without replacement, disjoint rank slices, a pure function of step."""

import pytest
import torch

from interpolant.train import StepSampler, step_seed


def test_each_epoch_visits_every_example_once():
    sampler = StepSampler(n=12, batch_size=5, seed=3)
    stream = torch.cat([sampler.global_indices(s) for s in range(12)])  # 60 = 5 epochs
    for epoch in range(5):
        assert sorted(stream[12 * epoch : 12 * (epoch + 1)].tolist()) == list(range(12))
    assert not torch.equal(stream[:12], stream[12:24])  # epochs are reshuffled


def test_rank_slices_are_disjoint_and_make_up_the_global_batch():
    sampler = StepSampler(n=50, batch_size=16, seed=0)
    for step in (0, 3, 7):
        full = sampler.global_indices(step)
        parts = [sampler.rank_indices(step, r, 4) for r in range(4)]
        assert torch.equal(torch.cat(parts), full)
        two = [sampler.rank_indices(step, r, 2) for r in range(2)]
        assert torch.equal(torch.cat(two), full)
    with pytest.raises(ValueError, match="cannot split"):
        sampler.rank_indices(0, 0, 3)


def test_pure_function_of_seed_and_step():
    a, b = StepSampler(30, 8, seed=1), StepSampler(30, 8, seed=1)
    late = b.global_indices(40)  # a fresh sampler jumps straight to step 40
    for s in range(41):
        got = a.global_indices(s)
    assert torch.equal(got, late)
    assert not torch.equal(StepSampler(30, 8, seed=2).global_indices(40), late)
    assert step_seed("x", 1, 2, 3) == step_seed("x", 1, 2, 3) != step_seed("x", 2, 1, 3)
    assert step_seed("x", 1, 2, 3) != step_seed("x", 1, 3, 2) != step_seed("y", 1, 2, 3)
