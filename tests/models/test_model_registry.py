"""Registry, JSON configs (a checkpoint rebuilds its model) and use through ip.Model /
ip.Preconditioned."""

import json

import pytest
import torch

import interpolant as ip
from interpolant.models import MODELS, build_model, model_config

SMALL = {
    "mlp": (dict(dim=2, width=16, depth=1, num_classes=3), (4, 2), {}),
    "unet": (
        dict(image_size=8, in_channels=1, model_channels=8, channel_mult=(1, 2),
             num_res_blocks=1, attn_resolutions=(4,), head_channels=8, num_classes=3),
        (4, 1, 8, 8),
        {},
    ),
    "dit": (
        dict(image_size=8, in_channels=1, depth=1, hidden_size=16, num_heads=2, num_classes=3,
             qk_norm=True, pos_embed="learned"),
        (4, 1, 8, 8),
        {},
    ),
    "mmdit": (
        dict(context_dim=3, image_size=8, in_channels=1, depth=2, hidden_size=16, num_heads=2),
        (4, 1, 8, 8),
        {"context": torch.randn(4, 2, 3)},
    ),
}  # fmt: skip


def test_registry_names():
    for size in ("s", "b", "l", "xl"):
        for p in (2, 4, 8):
            assert f"dit-{size}/{p}" in MODELS
    assert {"mlp", "unet", "dit", "mmdit", "mmdit-s/2"} <= set(MODELS)
    with pytest.raises(ValueError, match="unknown model 'dit-q/2'"):
        build_model("dit-q/2")


@pytest.mark.parametrize("name", sorted(SMALL))
def test_json_config_rebuilds_the_same_model(name, randomize):
    kwargs, shape, cond = SMALL[name]
    net = randomize(build_model(name, **kwargs)).eval()
    config = json.loads(json.dumps(model_config(net)))
    assert config["name"] == name
    rebuilt = build_model(**config).eval()
    rebuilt.load_state_dict(net.state_dict())
    x, t = torch.randn(shape), torch.rand(shape[0])
    assert torch.equal(rebuilt(x, t, **cond), net(x, t, **cond))


def test_preset_config_names_the_base_family():
    with torch.device("meta"):
        net = build_model("dit-s/4", image_size=16, in_channels=3)
    config = model_config(net)
    assert config["name"] == "dit" and config["patch_size"] == 4 and config["depth"] == 12
    assert config["image_size"] == 16
    with pytest.raises(TypeError, match="backbones"):
        model_config(torch.nn.Linear(2, 2))


def test_backbones_plug_into_model_and_preconditioned(randomize):
    kwargs, shape, _ = SMALL["dit"]
    net = randomize(build_model("dit", **kwargs)).eval()
    x, t, y = torch.randn(shape), torch.rand(shape[0]), torch.tensor([0, 1, 2, 3])
    path = ip.paths.Linear()
    model = ip.Model(net, path, predicts="velocity")
    assert torch.equal(model(x, t, class_labels=y).velocity, net(x, t, class_labels=y))
    # Preconditioned feeds c_noise = ln(sigma / alpha) / 4 as the time input.
    pre = ip.Preconditioned(net, path)
    out = pre(x, t.clamp(0.05, 0.95), class_labels=y)
    assert out.shape == x.shape and torch.isfinite(out).all()
