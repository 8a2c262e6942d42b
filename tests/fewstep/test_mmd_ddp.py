"""MMD fine-tuning under DDP: the differentiable K-step sampler runs through the trainer's
DDP-wrapped model (K forwards, and with checkpointing K recomputed forwards, before one backward),
and 2 gloo ranks give the gradient of one process on the same global batch (2 rounds of 4)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent

SCRIPT = """
import sys
import torch
torch.set_num_threads(1)
sys.path.insert(0, {here!r})
from test_mmd_ddp import make_trainer

trainer = make_trainer(sys.argv[1], checkpoint_steps=sys.argv[2] == "1")
grads = []
for step in range(3):
    trainer.train_step(step)
    grads.append(torch.cat([p.grad.flatten() for p in trainer.params]))
if trainer.info.rank == 0:
    torch.save(torch.stack(grads), sys.argv[1] + "/grads.pt")
trainer.close()
"""


def _features(x: torch.Tensor) -> torch.Tensor:
    """A fixed nonlinear feature map (the classifier's role), differentiable in x."""
    w = torch.linspace(-1, 1, 12, dtype=x.dtype).reshape(4, 3)
    return torch.tanh(x.flatten(1) @ w)


def make_trainer(run_dir: str, checkpoint_steps: bool):
    from interpolant import Model, paths
    from interpolant.fewstep.mmd import MMDFinetune
    from interpolant.models import MLP
    from interpolant.solvers import Sampler
    from interpolant.train import TrainConfig, Trainer

    torch.manual_seed(0)
    net = MLP(4, width=16, depth=2)
    torch.nn.init.normal_(net.fc_out.weight, std=0.1)  # not the zero output of a fresh MLP
    model = Model(net, paths.Linear(), predicts="velocity")
    x = 0.5 * torch.randn(32, 4, generator=torch.Generator().manual_seed(1)) + 1.0
    cfg = TrainConfig.from_dict(
        dict(
            run_dir=run_dir,
            device="cpu",
            steps=3,
            batch_size=8,
            batch_per_gpu=4,
            noise_block=4,
            lr=1e-2,
            ema="none",
            log_every=1,
            checkpoint_every=3,
            progress=False,
        )
    )
    sampler = Sampler("euler", steps=3, grid="uniform")
    objective = MMDFinetune(sampler, features=_features, checkpoint_steps=checkpoint_steps)
    return Trainer(model, objective, x, cfg)


@pytest.mark.distributed
@pytest.mark.parametrize("checkpoint_steps", [True, False])
def test_two_gloo_ranks_give_the_single_process_gradient(tmp_path, checkpoint_steps):
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(SCRIPT.format(here=str(HERE))))
    run_dir = tmp_path / "dist"
    run_dir.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    flag = "1" if checkpoint_steps else "0"
    proc = subprocess.run(
        [*cmd, str(script), str(run_dir), flag],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    dist_grads = torch.load(run_dir / "grads.pt")

    single = make_trainer(str(tmp_path / "single"), checkpoint_steps)
    assert single.rounds == 2 and single.info.world_size == 1
    grads = []
    for step in range(3):
        single.train_step(step)
        grads.append(torch.cat([p.grad.flatten() for p in single.params]))
    expected = torch.stack(grads)
    assert expected.abs().max() > 1e-3  # a gradient that is not zero
    torch.testing.assert_close(dist_grads, expected, atol=1e-6, rtol=1e-5)
    # One rank's shard alone is not the global gradient (the all-reduce is what makes it equal).
    shard = make_trainer(str(tmp_path / "shard"), checkpoint_steps)
    first_rows = shard.sampler.rank_indices(0, 0, 2)[:4]
    shard.optimizer.zero_grad(set_to_none=True)
    shard._micro_loss(first_rows, 0, 0).backward()
    alone = torch.cat([p.grad.flatten() for p in shard.params])
    assert (alone - expected[0]).abs().max() > 1e-4
