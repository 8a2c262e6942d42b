"""Training structures (train.objective.name): multitask and diffusevae train, resume bitwise
and sample through the normal api.train / api.sample; unknown names list the valid ones."""

import pytest
import torch

from interpolant import api
from interpolant.api.runs import as_run_config
from interpolant.errors import UserError
from interpolant.train import checkpoint as ckpt

torch.set_num_threads(1)

TINY = {
    "multitask": [
        "train.model.width=16", "train.model.depth=1", "train.objective.diffusion_steps=10",
        "train.batch_size=16", "sample.nfe=10",
    ],
    "diffusevae": [
        "train.model.model_channels=4", "train.objective.vae_steps=3",
        "train.objective.vae_batch_size=16", "train.batch_size=16", "sample.nfe=3",
    ],
}  # fmt: skip


def _train(preset, run_dir, steps, *extra):
    overrides = [
        *TINY[preset], f"train.run_dir={run_dir}", f"train.steps={steps}",
        "train.checkpoint_every=2", "train.progress=false", "train.device=cpu",
        "train.lr_schedule=constant", *extra,
    ]  # fmt: skip
    return api.train(preset, overrides, plots=False)


@pytest.mark.parametrize("preset", ["multitask", "diffusevae"])
def test_structure_trains_resumes_bitwise_and_samples(tmp_path, preset):
    _train(preset, tmp_path / "a", 4)
    _train(preset, tmp_path / "b", 2)
    resumed = _train(preset, tmp_path / "b", 4)
    assert resumed.trainer.step == 4
    a = ckpt.read_tensors(tmp_path / "a" / "checkpoints" / "step-00000004", "model")
    b = ckpt.read_tensors(tmp_path / "b" / "checkpoints" / "step-00000004", "model")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    out = api.sample(tmp_path / "a", n=12, batch_size=5)
    assert out.x.shape == (12, 1, 8, 8) and torch.isfinite(out.x).all()
    if preset == "multitask":  # images and labels generated jointly, one evaluation per step
        assert out.labels is not None and out.labels.shape == (12,)
        assert out.meta["nfe_spent"] == 10
        strided = api.sample(tmp_path / "a", n=12, batch_size=5, nfe=4)  # sample.nfe honoured
        assert strided.meta["nfe_spent"] == 4 and torch.isfinite(strided.x).all()
    else:  # the frozen VAE is part of the checkpoint and was not trained by the refiner
        assert (tmp_path / "a" / "vae" / "vae.safetensors").is_file()
        assert out.meta["nfe_spent"] == 3
        from safetensors.torch import load_file

        vae = load_file(str(tmp_path / "a" / "vae" / "vae.safetensors"))
        assert all(torch.equal(a[f"vae.{k}"], v) for k, v in vae.items())


def test_unknown_structure_and_option_list_the_valid_ones():
    with pytest.raises(UserError, match=r"diffusevae.*multitask.*standard"):
        as_run_config("digits-flow", ["train.objective.name=bogus"])
    with pytest.raises(UserError, match="label_weight"):
        as_run_config("multitask", ["train.objective.bogus=1"])


def test_multitask_needs_labels(tmp_path):
    with pytest.raises(UserError, match=r"data\.labels=true"):
        _train("multitask", tmp_path / "m", 2, "data.labels=false")
