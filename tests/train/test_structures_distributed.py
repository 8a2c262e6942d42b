"""The training structures under torchrun: 2 gloo CPU ranks (DDP) synchronise the multitask and
diffusevae gradients, so after one step both ranks hold the same weights, equal to one process
on the concatenated batch (same global batch, same noise blocks)."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from interpolant import api
from interpolant.train import build_network
from interpolant.train import checkpoint as ckpt

TINY = {
    "multitask": [
        "train.model.width=16", "train.model.depth=1", "train.objective.diffusion_steps=10",
        "sample.nfe=10",
    ],
    "diffusevae": [
        "train.model.model_channels=4", "train.objective.vae_steps=3",
        "train.objective.vae_batch_size=16",
    ],
}  # fmt: skip
# 2 ranks x 4 == 1 rank x 2 rounds x 4; noise blocks of 4 keep the draws identical.
COMMON = [
    "data.n=64", "train.steps=1", "train.batch_size=8", "train.batch_per_gpu=4",
    "train.noise_block=4", "train.checkpoint_every=1", "train.progress=false",
    "train.device=cpu", "train.lr_schedule=constant", "train.ema=none", "train.log_every=1",
]  # fmt: skip

SCRIPT = """
import os, sys, torch
from interpolant import api
from interpolant.train import state as st
preset, run_dir, overrides = sys.argv[1], sys.argv[2], sys.argv[3:]
result = api.train(preset, [*overrides, f"train.run_dir={{run_dir}}", "train.parallel=ddp"],
                   plots=False)
rank = int(os.environ["RANK"])
state = {{k: v.detach().clone() for k, v in st.model_state(result.trainer.module).items()}}
torch.save(state, os.path.join(run_dir, f"rank{{rank}}.pt"))
"""


def _weights(state):
    return {k: v for k, v in state.items() if not k.startswith("vae.")}


@pytest.mark.distributed
@pytest.mark.parametrize("preset", ["multitask", "diffusevae"])
def test_two_gloo_ranks_synchronise_the_structure_and_equal_one_process(tmp_path, preset):
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(SCRIPT.format()))
    run_dir = tmp_path / "dist"
    run_dir.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run(
        [*cmd, str(script), preset, str(run_dir), *TINY[preset], *COMMON],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "on 2 x cpu (ddp)" in (run_dir / "log.txt").read_text()
    rank0 = torch.load(run_dir / "rank0.pt")
    rank1 = torch.load(run_dir / "rank1.pt")
    assert rank0.keys() == rank1.keys()
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)  # synchronised gradients

    torch.set_num_threads(1)
    single = api.train(preset, [*TINY[preset], *COMMON, f"train.run_dir={tmp_path / 'one'}"],
                       plots=False)  # fmt: skip
    assert single.trainer.rounds == 2
    one = ckpt.read_tensors(tmp_path / "one" / "checkpoints" / "step-00000001", "model")
    dist = ckpt.read_tensors(run_dir / "checkpoints" / "step-00000001", "model")
    assert one.keys() == dist.keys()
    for key in one:
        torch.testing.assert_close(dist[key], one[key], rtol=0, atol=1e-6)
        torch.testing.assert_close(rank0[key], one[key], rtol=0, atol=1e-6)
    # The step moved the trained weights (the comparison is not between two initialisations).
    init = build_network(single.config.train).state_dict()
    assert any(not torch.equal(init[k], one[k]) for k in _weights(one))
