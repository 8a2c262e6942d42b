"""LoRA fine-tuning under torchrun with 2 gloo ranks (DDP and FSDP2): only the adapters train and
are synchronised, rank 0 writes the adapter file once, and it equals the one-process run on the
same global batch (1e-6); the base weights stay bitwise as loaded."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from interpolant.train import as_config, build_network, train
from interpolant.train.lora import base_state, read_lora

# 2 ranks x 2 rounds x 4 == 1 rank x 4 rounds x 4; noise blocks of 4 keep the draws identical.
SETTINGS = dict(
    device="cpu",
    steps=4,
    batch_size=16,
    batch_per_gpu=4,
    noise_block=4,
    lr=1e-2,
    ema="halflife",
    ema_halflife_kimg=0.02,
    model={"name": "mlp", "dim": 2, "width": 16, "depth": 2, "dropout": 0.1},
    log_every=2,
    checkpoint_every=2,
    progress=False,
)

SCRIPT = """
import sys, torch
from interpolant.train import train
settings = {settings!r}
data = torch.load(sys.argv[3])
cfg = dict(settings, run_dir=sys.argv[1], parallel=sys.argv[2],
           lora={{"rank": 2, "base": sys.argv[4]}})
train(cfg, data)
"""


def _data() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return 0.5 * torch.randn(40, 2, generator=g) + torch.tensor([1.0, -1.0])


def _base(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """Random base weights (every tensor perturbed, so the adapters' gradients are not zero)."""
    model = build_network(as_config({**SETTINGS, "run_dir": "unused"}))
    torch.manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp_path / "base.safetensors"))
    return tmp_path / "base.safetensors", state


@pytest.mark.distributed
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_lora_on_two_gloo_ranks_equals_one_process(tmp_path, parallel):
    base_file, base_weights = _base(tmp_path)
    torch.save(_data(), tmp_path / "data.pt")
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(SCRIPT.format(settings=SETTINGS)))
    run_dir = tmp_path / "dist"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    args = [str(script), str(run_dir), parallel, str(tmp_path / "data.pt"), str(base_file)]
    proc = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = (run_dir / "log.txt").read_text()
    assert f"on 2 x cpu ({parallel})" in log
    assert log.count("wrote LoRA adapter") == 1  # rank 0 alone, once
    assert sorted(p.name for p in run_dir.iterdir() if "lora" in p.name) == ["lora.safetensors"]

    single_dir = tmp_path / "single"
    trainer = train(
        {**SETTINGS, "run_dir": str(single_dir), "lora": {"rank": 2, "base": str(base_file)}},
        _data(),
    )
    assert trainer.rounds == 4
    dist_adapter = read_lora(run_dir / "lora.safetensors")
    single_adapter = read_lora(single_dir / "lora.safetensors")
    assert dist_adapter.base == single_adapter.base  # the same base fingerprint
    assert sorted(dist_adapter.tensors) == sorted(single_adapter.tensors)
    assert len(dist_adapter.tensors) == 8  # A and B of fc1 and fc2 in each of the 2 blocks
    for key, value in single_adapter.tensors.items():
        torch.testing.assert_close(dist_adapter.tensors[key], value, atol=1e-6, rtol=0, msg=key)
    # The adapters did train (B left zero), on both routes alike.
    assert any(v.abs().max() > 1e-4 for k, v in single_adapter.tensors.items() if "lora_B" in k)

    # The distributed checkpoint: optimiser state for the adapters only, base bitwise as loaded.
    step = run_dir / "checkpoints" / "step-00000004"
    optim = load_file(str(step / "optimizer.safetensors"))
    assert optim and all(".lora_A." in k or ".lora_B." in k for k in optim), sorted(optim)[:4]
    model = load_file(str(step / "model.safetensors"))
    for key, value in base_state(model).items():
        assert torch.equal(value, base_weights[key]), key
