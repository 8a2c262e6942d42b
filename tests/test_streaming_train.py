"""Streaming training equals in-memory training bit for bit: the digits through a memory map,
shards, an image folder, 2 gloo ranks, a stopped-and-resumed run, workers, an encoder."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from interpolant.data import load_digits
from interpolant.data.shards import write_shards
from interpolant.data.streaming import ArrayStream, TensorStream
from interpolant.train import TrainConfig, Trainer
from interpolant.train.build import build_network, build_objective

HERE = Path(__file__).resolve().parent
SETTINGS = dict(
    model={"name": "mlp", "dim": 64, "width": 32, "depth": 2, "dropout": 0.1},
    device="cpu",
    steps=6,
    batch_size=32,
    batch_per_gpu=8,
    noise_block=8,
    lr=1e-3,
    ema_halflife_kimg=0.05,
    log_every=3,
    checkpoint_every=3,
    keep_checkpoints=5,
    progress=False,
)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _config(run_dir: Path, **changes) -> TrainConfig:
    return TrainConfig.from_dict({**SETTINGS, "run_dir": str(run_dir), **changes})


def _train(run_dir: Path, data, labels=None, **changes) -> Trainer:
    cfg = _config(run_dir, **changes)
    model = build_network(cfg)
    trainer = Trainer(model, build_objective(cfg, model.path), data, cfg, labels)
    trainer.run()
    trainer.close()
    return trainer


def _weights(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    path = run_dir / "checkpoints" / f"step-{step:08d}"
    out = {f"model/{k}": v for k, v in load_file(str(path / "model.safetensors")).items()}
    out.update({f"ema/{k}": v for k, v in load_file(str(path / "ema.safetensors")).items()})
    out.update({f"opt/{k}": v for k, v in load_file(str(path / "optimizer.safetensors")).items()})
    return out


def _assert_bitwise(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    data = load_digits("train")
    folder = tmp_path_factory.mktemp("digits")
    np.savez(folder / "digits.npz", x=data.x.numpy(), y=data.labels.numpy())
    write_shards(ArrayStream(folder / "digits.npz", labels_key="y"), folder / "shards", 500,
                 progress=False)  # fmt: skip
    return data, folder


def test_streaming_equals_in_memory_bitwise(digits, tmp_path):
    """Memory map, shards (3 files, rows crossing shard borders) and in memory: same weights,
    EMA and optimiser state after 6 steps, class-conditional through the in-memory labels."""
    data, folder = digits
    y = data.labels
    cond = {"model": {**SETTINGS["model"], "num_classes": 10}}  # type: ignore[dict-item]
    ref = _train(tmp_path / "mem", data.x, y, **cond)
    npz = ArrayStream(folder / "digits.npz", labels_key="y")
    streamed = _train(tmp_path / "npz", npz, npz.labels, **cond)
    from interpolant.data.shards import ShardStream

    shards = ShardStream(folder / "shards")
    assert len(shards.manifest["shards"]) == 3
    sharded = _train(tmp_path / "shards", shards, shards.labels, **cond)
    for run in ("npz", "shards"):
        _assert_bitwise(_weights(tmp_path / "mem", 6), _weights(tmp_path / run, 6))
    # The checkpoints record the stream and where it stopped (6 steps x 32 of 1500 rows).
    assert streamed.data_desc["stream"] == "array" and sharded.data_desc["stream"] == "shards"
    assert sharded.data_desc["position"] == {"step": 6, "examples": 192, "epoch": 0, "offset": 192}
    assert ref.data_desc["fingerprint"] != sharded.data_desc["fingerprint"]  # cheap, not sha


def test_workers_and_epoch_wrap_equal_in_memory(tmp_path):
    """Two DataLoader workers reading ahead, across epoch boundaries (n = 50 < 6 x 32)."""
    x = torch.randn(50, 64, generator=torch.Generator().manual_seed(3))
    _train(tmp_path / "mem", x)
    _train(tmp_path / "workers", TensorStream(x), num_workers=2, prefetch_factor=2)
    _assert_bitwise(_weights(tmp_path / "mem", 6), _weights(tmp_path / "workers", 6))
    # Any map-style Dataset, read item by item (a TensorDataset's items are tuples (x,)).
    plain = _train(tmp_path / "plain", torch.utils.data.TensorDataset(x))
    _assert_bitwise(_weights(tmp_path / "mem", 6), _weights(tmp_path / "plain", 6))
    assert plain.data_desc["stream"] == "TensorDataset" and plain.data_desc["shape"] == [64]
    with pytest.raises(ValueError, match="prefetch_factor needs num_workers > 0"):
        _train(tmp_path / "bad", TensorStream(x), prefetch_factor=2)


def test_stopped_streaming_run_resumes_identically(digits, tmp_path):
    """A run stopped after 3 steps and resumed in a new trainer (a new loader starting at
    step 3) equals an uninterrupted one; a changed batch size is reported as a stream jump."""
    folder = digits[1]
    _train(tmp_path / "whole", ArrayStream(folder / "digits.npz"))
    _train(tmp_path / "split", ArrayStream(folder / "digits.npz"), steps=3)
    resumed = _train(tmp_path / "split", ArrayStream(folder / "digits.npz"))
    assert "resumed from" in (tmp_path / "split" / "log.txt").read_text()
    assert resumed.step == 6
    _assert_bitwise(_weights(tmp_path / "whole", 6), _weights(tmp_path / "split", 6))
    _train(tmp_path / "split", ArrayStream(folder / "digits.npz"), steps=8, batch_size=16,
           batch_per_gpu=8)  # fmt: skip
    log = (tmp_path / "split" / "log.txt").read_text()
    assert "the data stream resumes at epoch 0, example 96; the checkpoint stopped at " in log
    assert "example 192" in log


KILL_SCRIPT = """
import sys, os, signal
sys.path.insert(0, {here!r})
import torch
torch.set_num_threads(1)
from test_streaming_train import _config
from interpolant.data.streaming import ArrayStream
from interpolant.train import Trainer
from interpolant.train.build import build_network, build_objective

cfg = _config(sys.argv[1], steps=6, checkpoint_every=2)
model = build_network(cfg)
def hook(trainer, step):
    if step == 3 and sys.argv[3] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)  # dies after step 3; checkpoint 2 survives
Trainer(model, build_objective(cfg, model.path), ArrayStream(sys.argv[2]), cfg,
        step_hook=hook).run()
"""


def test_killed_streaming_run_resumes_identically(digits, tmp_path):
    """SIGKILL after step 3 (newest checkpoint: step 2, with a DataLoader iterator alive):
    the restarted run reads from step 2 on and ends equal to one never killed."""
    folder = digits[1]
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(KILL_SCRIPT.format(here=str(HERE))))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def job(run: str, mode: str) -> subprocess.CompletedProcess:
        args = [sys.executable, str(script), str(tmp_path / run), str(folder / "digits.npz"), mode]
        return subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)

    killed = job("killed", "kill")
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert (tmp_path / "killed" / "checkpoints" / "step-00000002").is_dir()
    assert job("killed", "run").returncode == 0
    _train(tmp_path / "whole", ArrayStream(folder / "digits.npz"), checkpoint_every=2)
    assert "resumed from" in (tmp_path / "killed" / "log.txt").read_text()
    _assert_bitwise(_weights(tmp_path / "whole", 6), _weights(tmp_path / "killed", 6))


DDP_SCRIPT = """
import sys
sys.path.insert(0, {here!r})
import torch
torch.set_num_threads(1)
from test_streaming_train import _config
from interpolant.data.streaming import ArrayStream
from interpolant.train import Trainer
from interpolant.train.build import build_network, build_objective

cfg = _config(sys.argv[1], batch_per_gpu=8)
model = build_network(cfg)
trainer = Trainer(model, build_objective(cfg, model.path), ArrayStream(sys.argv[2]), cfg).run()
trainer.close()
"""


@pytest.mark.distributed
def test_two_gloo_ranks_streaming_equal_one_rank(digits, tmp_path):
    """2 ranks x 2 rounds x 8, each streaming its own half of every global batch, equal 1 rank
    x 4 rounds x 8 reading the tensor in memory (DDP averages the two halves' gradients)."""
    data, folder = digits
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT.format(here=str(HERE))))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run(
        [*cmd, str(script), str(tmp_path / "ddp"), str(folder / "digits.npz")],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "on 2 x cpu (ddp)" in (tmp_path / "ddp" / "log.txt").read_text()
    _train(tmp_path / "single", data.x)
    ddp, single = _weights(tmp_path / "ddp", 6), _weights(tmp_path / "single", 6)
    assert ddp.keys() == single.keys()
    for key in ddp:  # DDP's all-reduce sums in another order: equal to float rounding
        torch.testing.assert_close(ddp[key], single[key], atol=1e-6, rtol=1e-5)


class _Halve(torch.nn.Module):
    """A deterministic 'encoder' (64 -> 32 features: means of pairs)."""

    def forward(self, x):
        return x.reshape(x.shape[0], 32, 2).mean(-1)


def test_encoder_on_the_fly_equals_pre_encoded(digits, tmp_path):
    """Latents computed per micro-batch during training equal latents packed into shards
    beforehand (data pack --encoder): same weights."""
    data = digits[0]
    flat = data.x.reshape(-1, 64)
    model = {**SETTINGS["model"], "dim": 32}  # type: ignore[dict-item]
    on_the_fly = tmp_path / "fly"
    cfg = _config(on_the_fly, model=model)
    net = build_network(cfg)
    trainer = Trainer(net, build_objective(cfg, net.path), TensorStream(flat), cfg,
                      encoder=_Halve())  # fmt: skip
    trainer.run()
    assert trainer.data_desc["encoder"] == "_Halve"
    write_shards(flat, tmp_path / "latents", 400, encoder=_Halve(), progress=False)
    from interpolant.data.shards import ShardStream

    latents = ShardStream(tmp_path / "latents")
    assert latents.sample_shape == (32,)
    _train(tmp_path / "packed", latents, model=model)
    _assert_bitwise(_weights(on_the_fly, 6), _weights(tmp_path / "packed", 6))


def test_a_non_map_dataset_is_refused(tmp_path):
    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            yield torch.zeros(64)

    with pytest.raises(ValueError, match="map-style Dataset"):
        _train(tmp_path / "bad", Stream())
