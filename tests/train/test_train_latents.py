"""Latent training named by the config (train.encoder, issue 19): the encoder applied on the fly
equals training on pre-encoded latents bit for bit; `interpolant train` / `interpolant sample`
from the command line draw latents of the recorded shape and decode them to data space."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from latent_codecs import Pool
from safetensors.torch import load_file

from interpolant.cli.main import main
from interpolant.data import load_digits
from interpolant.errors import UserError
from interpolant.train import checkpoint as ckpt
from interpolant.train import train
from interpolant.train.latents import latent_shape, load_codec

SETTINGS = dict(
    device="cpu",
    steps=3,
    batch_size=16,
    lr=1e-3,
    ema="none",
    model={"name": "mlp", "dim": 16, "width": 32, "depth": 2},
    log_every=1,
    checkpoint_every=3,
    progress=False,
)


def _weights(run_dir, step: int = 3) -> dict[str, torch.Tensor]:
    return load_file(
        str(run_dir / "checkpoints" / ckpt.checkpoint_name(step) / "model.safetensors")
    )


def test_config_encoder_on_the_fly_equals_pre_encoded(tmp_path):
    x = load_digits("train").x[:64]
    fly = train({**SETTINGS, "run_dir": str(tmp_path / "fly"), "encoder": "latent_codecs:Pool"}, x)
    assert fly.data_desc["encoder"] == "Pool" and fly.data_desc["latent_shape"] == [1, 4, 4]
    train({**SETTINGS, "run_dir": str(tmp_path / "packed")}, Pool().encode(x))
    a, b = _weights(tmp_path / "fly"), _weights(tmp_path / "packed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_codec_specs_and_refusals(tmp_path):
    codec = load_codec("latent_codecs:Pool")
    assert codec.name == "Pool" and codec.decode is not None
    z = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert latent_shape(codec.encode, z) == (1, 2, 2)
    # decode(encode(x)) is the blockwise mean: exact on a blockwise-constant image.
    blocks = torch.kron(torch.randn(1, 1, 2, 2), torch.ones(2, 2))
    assert torch.equal(codec.decode_all(codec.encode(blocks)), blocks)
    plain = load_codec("latent_codecs:halve")
    assert plain.decode is None
    with pytest.raises(UserError, match="has no decode"):
        plain.decode_all(z)
    with pytest.raises(UserError, match="cannot import module 'no_such_codecs'"):
        load_codec("no_such_codecs:Pool")
    with pytest.raises(UserError, match="has no 'Poool'"):
        load_codec("latent_codecs:Poool")
    with pytest.raises(UserError, match="AutoencoderKL folder"):
        load_codec(str(tmp_path))  # a folder without config.json


def _cli_run(tmp_path, encoder: str) -> tuple[dict, np.lib.npyio.NpzFile]:
    run, out = tmp_path / "run", tmp_path / "samples"
    args = ["train", "--preset", "digits-flow", f"train.encoder={encoder}", f"train.run_dir={run}",
            "train.steps=2", "train.batch_size=16", "train.progress=false", "data.n=64",
            "train.model.width=32"]  # fmt: skip
    assert main(args) == 0
    state = json.loads((run / "checkpoints" / "step-00000002" / "state.json").read_text())
    assert main(["sample", str(run), "--out", str(out), "sample.n=12", "sample.nfe=2"]) == 0
    assert (out / "samples.png").is_file()
    return state, np.load(out / "samples.npz")


def test_cli_trains_on_latents_and_sample_decodes_them(tmp_path):
    state, saved = _cli_run(tmp_path, "latent_codecs:Pool")
    assert state["data"]["shape"] == [1, 8, 8] and state["data"]["latent_shape"] == [1, 4, 4]
    assert state["config"]["model"]["dim"] == 16  # the network was fitted to the latents
    z, x = torch.from_numpy(saved["latents"]), torch.from_numpy(saved["samples"])
    assert z.shape == (12, 1, 4, 4) and x.shape == (12, 1, 8, 8)
    assert torch.equal(x, Pool().decode(z))  # samples are the decoded latents
    meta = json.loads(str(saved["meta"]))
    assert meta["latents"] == {"encoder": "latent_codecs:Pool", "decoded": True}
    assert saved["samples_data"].shape == (12, 1, 8, 8)  # data units: the decoded images


@pytest.mark.peers
def test_cli_with_a_random_local_autoencoderkl(tmp_path):
    """A diffusers AutoencoderKL saved locally with random weights (nothing downloaded)."""
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
    state, saved = _cli_run(tmp_path, str(tmp_path / "vae"))
    assert state["data"]["latent_shape"] == [2, 4, 4]
    assert state["data"]["encoder"] == "AutoencoderKL"
    z, x = torch.from_numpy(saved["latents"]), torch.from_numpy(saved["samples"])
    assert z.shape == (12, 2, 4, 4) and x.shape == (12, 1, 8, 8)
    with torch.no_grad():  # decoded as x = D(z / s)
        expected = vae.decode(z / 0.5).sample
    torch.testing.assert_close(x, expected, atol=1e-5, rtol=1e-5)
