"""The two-time backbone (models.TwoTime) and ``interpolant distill --method meanflow|shortcut``:
the default gap on the K-step grid, the student that starts as its backbone, and a written run
folder whose K-step samples are MeanFlow's / the shortcut model's update and, trained on Gaussian
data, close to the exact one-step map m + s eps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interpolant.errors import UserError
from interpolant.fewstep.meanflow import interval_sample
from interpolant.models import TwoTime, build_model, model_config
from interpolant.paths import Linear
from interpolant.solvers import Sampler

MLP = {"name": "mlp", "dim": 2, "width": 16, "depth": 2}
UNET = {
    "name": "unet",
    "image_size": 8,
    "in_channels": 1,
    "model_channels": 8,
    "channel_mult": [1, 2],
    "attn_resolutions": [],
}
MEAN, STD = (1.5, -0.5), 0.5


@pytest.mark.parametrize("k", [1, 2, 3, 4, 8])
def test_default_gap_is_the_step_of_the_k_grid(k):
    net = TwoTime(MLP, steps=k)
    nodes = Sampler("euler", steps=k, grid="uniform").times(Linear())[:-1].float()
    assert torch.allclose(net.default_gap(nodes), torch.full_like(nodes, 1 / k), atol=1e-6)
    # On the 2K grid every node's gap reaches the K-grid node below it.
    fine = Sampler("euler", steps=2 * k, grid="uniform").times(Linear())[:-1].float()
    assert torch.allclose(net.default_gap(fine), torch.tensor([1 / k, 1 / (2 * k)]).repeat(k))
    assert torch.equal(TwoTime(MLP).default_gap(nodes), torch.zeros_like(nodes))


@pytest.mark.parametrize("spec", [MLP, UNET])
def test_two_time_starts_as_its_backbone_and_uses_the_gap(spec):
    torch.manual_seed(0)
    backbone = build_model(**spec)
    for p in backbone.parameters():  # not the zero output of a fresh backbone
        torch.nn.init.normal_(p, std=0.2)
    net = TwoTime(spec, steps=4)
    net.load_backbone(backbone.state_dict())
    shape = (5, 2) if spec is MLP else (5, 1, 8, 8)
    x, t = torch.randn(shape), torch.rand(5)
    with torch.no_grad():
        plain = backbone(x, t)
        assert plain.abs().max() > 1e-3
        for gap in (0.0, 0.3, torch.rand(5), None):
            assert torch.allclose(net(x, t, gap=gap), plain, atol=1e-6)
        torch.nn.init.normal_(net.embedding.gap_fc2.weight)  # now the gap matters
        assert (net(x, t, gap=0.7) - net(x, t, gap=0.1)).abs().max() > 1e-3
    rebuilt = build_model(**model_config(net))
    assert (
        model_config(rebuilt)
        == model_config(net)
        == {"name": "two-time", "backbone": spec, "steps": 4}
    )
    assert rebuilt.state_dict().keys() == net.state_dict().keys()


def test_two_time_errors():
    with pytest.raises(UserError, match="another two-time"):
        TwoTime({"name": "two-time", "backbone": MLP})
    with pytest.raises(UserError, match="positive integer"):
        TwoTime(MLP, steps=0)
    with pytest.raises(UserError, match="backbone="):
        TwoTime("mlp")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="same architecture"):
        TwoTime(MLP).load_backbone(build_model("mlp", dim=2, width=8, depth=2).state_dict())


def _teacher_run(tmp_path, width: int = 32):
    from interpolant.api import runs

    g = np.random.default_rng(0)
    data = np.array(MEAN) + STD * g.standard_normal((4000, 2))
    np.save(tmp_path / "gauss.npy", data.astype(np.float32))
    teacher = tmp_path / "teacher"
    overrides = [
        f"train.run_dir={teacher}",
        f"data.name={tmp_path / 'gauss.npy'}",
        "train.steps=10",
        "train.progress=false",
        "train.sample_every=null",
        "train.checkpoint_every=10",
        f"train.model.width={width}",
        "train.model.depth=2",
    ]
    runs.train("toy2d-flow", overrides=overrides, plots=False)
    return teacher


def _one_step_error(run_dir, k: int) -> float:
    """RMS distance of the run's K-step samples (``interpolant sample``) to the exact map."""
    from interpolant.api import runs

    out = runs.sample(run_dir, n=400)
    eps = runs.start_noise((2,), 0, range(400))
    return float((out.x - (torch.tensor(MEAN) + STD * eps)).norm(dim=1).square().mean().sqrt())


def test_distill_meanflow_and_shortcut_write_runs_that_sample_in_k_steps(tmp_path):
    from interpolant.api import runs
    from interpolant.cli.distill import distill

    teacher = _teacher_run(tmp_path)
    for method, k in (("shortcut", 2), ("meanflow", 1)):
        new = distill(teacher, method, k, train_steps=4, batch_size=64)
        loaded = runs.load_run(new)
        teacher_net = runs.load_run(teacher).config.train.model
        assert loaded.config.train.model == {
            "name": "two-time",
            "backbone": teacher_net,
            "steps": k,
        }
        assert (loaded.config.sample.solver, loaded.config.sample.nfe) == ("euler", k)
        out = runs.sample(new, n=32)
        # The run's K Euler steps are exactly the K-step update x - (t - r) u(x, t, t - r).
        eps = runs.start_noise((2,), 0, range(32))
        with torch.no_grad():
            expected, nfe = interval_sample(loaded.model, eps, k)
        assert nfe == k and torch.allclose(out.x, expected, atol=1e-6)
    with pytest.raises(UserError, match="power of two"):
        distill(teacher, "shortcut", 3)


@pytest.mark.slow
def test_distilled_shortcut_one_step_samples_are_close_to_the_exact_map(tmp_path):
    from interpolant.cli.distill import distill

    teacher = _teacher_run(tmp_path, width=64)
    start = _one_step_error(teacher, 1)  # the teacher sampled with its own sampler, for scale
    new = distill(teacher, "shortcut", 1, train_steps=1500)
    err = _one_step_error(new, 1)
    # Measured 0.062 (width 64, 1500 steps, batch 256); 0.25 at width 32. Data std 0.5.
    assert err < 0.15, (err, start)


def test_distill_shortcut_on_a_class_conditional_run_trains_and_samples_with_labels(tmp_path):
    """A class-conditional teacher gives a class-conditional two-time student: its backbone
    keeps num_classes with label dropout off, starts from the teacher's weights, and the run's
    K Euler steps are the K-step update with each sample's label."""
    from interpolant.api import runs
    from interpolant.cli.distill import distill

    teacher = tmp_path / "teacher"
    overrides = [
        f"train.run_dir={teacher}",
        "data.n=500",
        "data.labels=true",
        "train.steps=10",
        "train.progress=false",
        "train.sample_every=null",
        "train.checkpoint_every=10",
        "train.model.width=32",
        "train.model.depth=2",
    ]
    runs.train("toy2d-flow", overrides=overrides, plots=False)
    new = distill(teacher, "shortcut", 2, train_steps=3, batch_size=64)
    loaded = runs.load_run(new)
    backbone = loaded.config.train.model["backbone"]
    assert backbone["num_classes"] == 2 and backbone["class_dropout_prob"] == 0.0
    out = runs.sample(new, n=32)
    assert out.labels is not None and set(out.labels.tolist()) == {0, 1}
    eps = runs.start_noise((2,), 0, range(32))
    with torch.no_grad():
        expected, nfe = interval_sample(loaded.model, eps, 2, class_labels=out.labels)
        unlabelled, _ = interval_sample(loaded.model, eps, 2)
    assert nfe == 2 and torch.allclose(out.x, expected, atol=1e-6)
    assert (out.x - unlabelled).abs().max() > 1e-4  # the labels reach the network
