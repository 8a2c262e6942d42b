"""Gradient accumulation: batch_per_gpu changes memory use, not the update."""

import torch
from train_helpers import assert_same, make_config, make_data, make_model, make_objective, state_of

from interpolant.train import Trainer


def _trainer(run_dir, **changes):
    x, y = make_data()
    cfg = make_config(run_dir, batch_size=16, noise_block=4, resume=False, **changes)
    return Trainer(make_model(), make_objective(), x, cfg, y)


def test_four_rounds_of_four_equal_one_batch_of_sixteen(tmp_path):
    small = _trainer(tmp_path / "a", batch_per_gpu=4)
    large = _trainer(tmp_path / "b", batch_per_gpu=16)
    assert (small.rounds, large.rounds) == (4, 1)
    # One update: the accumulated gradient is that of the mean loss over the global batch.
    loss_small, norm_small, _ = small.train_step(0)
    loss_large, norm_large, _ = large.train_step(0)
    torch.testing.assert_close(loss_small, loss_large, rtol=1e-6, atol=0)
    torch.testing.assert_close(norm_small, norm_large, rtol=1e-6, atol=0)
    for (name, p), q in zip(small.module.named_parameters(), large.module.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7, msg=name)
    # Several updates (clipping, Adam, EMA included) stay together to float tolerance.
    small.config = small.config.replace(steps=5)
    large.config = large.config.replace(steps=5)
    small.step = large.step = 1
    for step in range(1, 5):
        small.train_step(step)
        large.train_step(step)
    assert_same(state_of(small), state_of(large), atol=1e-5)


def test_noise_is_tied_to_blocks_not_to_batch_per_gpu(tmp_path):
    # Same noise_block: identical losses; a different noise_block draws different noise.
    a = _trainer(tmp_path / "a", batch_per_gpu=8).train_step(0)[0]
    b = _trainer(tmp_path / "b", batch_per_gpu=16).train_step(0)[0]
    x, y = make_data()
    cfg = make_config(tmp_path / "c", batch_size=16, noise_block=8, resume=False)
    c = Trainer(make_model(), make_objective(), x, cfg, y).train_step(0)[0]
    torch.testing.assert_close(a, b, rtol=1e-6, atol=0)
    assert abs(float(a) - float(c)) > 1e-4
