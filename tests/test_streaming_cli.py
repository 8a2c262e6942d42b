"""``interpolant data pack|verify`` and training on streamed data from the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from interpolant.cli.main import main
from interpolant.data import load_digits, load_image_folder
from interpolant.data.shards import ShardStream


@pytest.fixture
def digit_images(tmp_path):
    """60 digits as 8-bit grey PNGs in class folders."""
    data = load_digits("train")
    pixels = ((data.x[:60, 0] + 1) * 127.5).round().to(torch.uint8).numpy()
    for i, (img, label) in enumerate(zip(pixels, data.labels[:60].tolist())):
        (tmp_path / "imgs" / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img, "L").save(tmp_path / "imgs" / str(label) / f"{i:03d}.png")
    return tmp_path / "imgs"


def test_pack_verify_and_train_on_shards(digit_images, tmp_path, capsys):
    out = tmp_path / "shards"
    args = ["data", "pack", str(digit_images), "--out", str(out), "--channels", "1"]
    assert main([*args, "--shard-size", "25", "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert "packed 60 samples of shape (1, 8, 8) (uint8) into 3 shards" in said
    stream = ShardStream(out)
    memory = load_image_folder(digit_images, channels=1)
    torch.testing.assert_close(stream[:], memory.x, atol=1e-6, rtol=0)
    assert torch.equal(stream.labels, memory.labels)
    assert main(["data", "verify", str(out)]) == 0
    assert "contents match the manifest" in capsys.readouterr().out
    # Packing into a folder that holds data: refused in one line, nothing overwritten.
    assert main([*args, "--no-progress"]) == 2
    assert "is not empty" in capsys.readouterr().err
    run = tmp_path / "run"
    train = ["train", "--preset", "digits-flow", f"data.name={out}", "data.labels=true",
             f"train.run_dir={run}", "train.steps=2", "train.batch_size=16",
             "train.num_workers=1", "train.progress=false", "train.log_every=1"]  # fmt: skip
    assert main(train) == 0
    state = json.loads((run / "checkpoints" / "step-00000002" / "state.json").read_text())
    assert state["data"]["stream"] == "shards" and state["data"]["n"] == 54  # 90% train split
    assert state["data"]["position"]["examples"] == 32


def test_train_on_a_streamed_npz_equals_in_memory(tmp_path):
    """data.options.stream=true on an .npz: the same checkpoint as reading it into memory."""
    data = load_digits("train")
    np.savez(tmp_path / "digits.npz", x=data.x.numpy()[:200])
    common = ["train", "--preset", "digits-flow", f"data.name={tmp_path / 'digits.npz'}",
              "train.steps=3", "train.batch_size=16", "train.progress=false"]  # fmt: skip
    assert main([*common, f"train.run_dir={tmp_path / 'mem'}"]) == 0
    assert main([*common, f"train.run_dir={tmp_path / 'st'}", "data.options.stream=true"]) == 0
    from safetensors.torch import load_file

    for name in ("model", "ema"):
        a = load_file(
            str(tmp_path / "mem" / "checkpoints" / "step-00000003" / f"{name}.safetensors")
        )
        b = load_file(
            str(tmp_path / "st" / "checkpoints" / "step-00000003" / f"{name}.safetensors")
        )
        assert all(torch.equal(a[k], b[k]) for k in a)
    # The commands that need the examples in memory read the stream (the same numbers).
    for run in ("mem", "st"):
        assert main(["analyze", str(tmp_path / run), "--what", "intrinsic-dim", "--n", "40"]) == 0
    records = [
        json.loads((tmp_path / run / "analysis" / "intrinsic-dim.json").read_text())
        for run in ("mem", "st")
    ]
    for record in records:
        del record["run_dir"], record["checkpoint"]
    assert records[0] == records[1]


def test_a_foreign_shard_stops_training_with_one_line(digit_images, tmp_path, capsys):
    for name, channels in (("a", "1"), ("b", "3")):
        args = ["data", "pack", str(digit_images), "--out", str(tmp_path / name)]
        assert main([*args, "--channels", channels, "--shard-size", "30", "--no-progress"]) == 0
    foreign = (tmp_path / "b" / "shard-00001.safetensors").read_bytes()
    (tmp_path / "a" / "shard-00001.safetensors").write_bytes(foreign)
    capsys.readouterr()
    code = main(["train", "--preset", "digits-flow", f"data.name={tmp_path / 'a'}",
                 f"train.run_dir={tmp_path / 'run'}", "train.steps=1"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "shard-00001.safetensors: field 'pack_id'" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.peers
def test_pack_with_a_randomly_initialised_vae(digit_images, tmp_path, capsys):
    """--encoder: a diffusers AutoencoderKL saved locally (random weights, nothing downloaded);
    the shards hold its posterior means times the scaling factor."""
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(
        in_channels=1,
        out_channels=1,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 8),
        latent_channels=2,
        norm_num_groups=4,
        layers_per_block=1,
        sample_size=8,
        scaling_factor=0.5,
    ).eval()
    vae.save_pretrained(tmp_path / "vae")
    out = tmp_path / "latents"
    args = ["data", "pack", str(digit_images), "--out", str(out), "--channels", "1"]
    assert main([*args, "--encoder", str(tmp_path / "vae"), "--no-progress"]) == 0
    assert "(1, 8, 8)" not in capsys.readouterr().out
    latents = ShardStream(out)
    assert latents.sample_shape == (2, 4, 4) and latents.manifest["encoder"]["scale"] == 0.5
    pixels = load_image_folder(digit_images, channels=1).x[:5]
    with torch.no_grad():
        expected = vae.encode(pixels).latent_dist.mode() * 0.5
    torch.testing.assert_close(latents[:5], expected, atol=1e-6, rtol=1e-5)
