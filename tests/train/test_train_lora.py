"""LoRA (train/lora.py): injection on every backbone and on diffusers models, gradients only in
the adapters, merged == unmerged, adapter files that refuse another base, and a fine-tune on a
shifted oracle that lowers the loss and leaves the base weights bitwise as they were."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from interpolant import Model, paths
from interpolant.data.oracles import GaussianMixture
from interpolant.errors import UserError
from interpolant.losses import Objective
from interpolant.models import build_model
from interpolant.train import TrainConfig, train
from interpolant.train.lora import (
    add_lora,
    base_fingerprint,
    base_state,
    default_targets,
    load_lora,
    lora_layers,
    merge_lora,
    save_lora,
    trainable_names,
)

BACKBONES = {
    "mlp": (dict(dim=4, width=16, depth=2), (3, 4), {}),
    "dit": (
        dict(image_size=8, in_channels=1, depth=2, hidden_size=32, num_heads=2),
        (3, 1, 8, 8),
        {},
    ),
    "unet": (
        dict(
            image_size=8,
            in_channels=1,
            model_channels=16,
            channel_mult=(1, 2),
            attn_resolutions=(4,),
            num_res_blocks=1,
        ),
        (3, 1, 8, 8),
        {},
    ),
    "mmdit": (
        dict(image_size=8, in_channels=1, depth=2, hidden_size=32, num_heads=2, context_dim=8),
        (3, 1, 8, 8),
        {"context": 5},
    ),
}


def _randomised(name: str, seed: int = 0) -> tuple[torch.nn.Module, tuple, dict]:
    """A backbone with every weight random (zero-initialised output layers would hide LoRA)."""
    kwargs, shape, cond = BACKBONES[name]
    torch.manual_seed(seed)
    net = build_model(name, **kwargs).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.2)
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(shape, generator=g), torch.rand(shape[0], generator=g)
    extra = {"context": torch.randn(shape[0], cond["context"], 8, generator=g)} if cond else {}
    return net, (x, t), extra


def _randomise_adapters(model: torch.nn.Module, seed: int = 2) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            b = layer.lora_B["default"].weight
            b.copy_(0.1 * torch.randn(b.shape, generator=g))


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_lora_starts_as_the_base_trains_only_adapters_and_merges_exactly(name):
    net, (x, t), extra = _randomised(name)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    y_base = net(x, t, **extra)
    targets = default_targets(net)
    add_lora(net, rank=4)
    assert sorted(lora_layers(net)) == sorted(targets) and targets
    # B = 0 at the start: exactly the base model.
    assert torch.equal(net(x, t, **extra), y_base)
    # Only A and B require grad, and the backward pass reaches only them.
    trainable = trainable_names(net)
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert len(trainable) == 2 * len(targets)
    _randomise_adapters(net)
    net(x, t, **extra).square().sum().backward()
    for pname, p in net.named_parameters():
        if pname in trainable:
            assert p.grad is not None and bool(p.grad.abs().sum() > 0), pname
        else:
            assert p.grad is None, pname
    # Merged == unmerged (1e-5), and the merged model is the plain architecture again.
    y_lora = net(x, t, **extra).detach()
    assert not torch.allclose(y_lora, y_base, atol=1e-4)  # the adapters do change the output
    merge_lora(net)
    assert not lora_layers(net)
    assert sorted(net.state_dict()) == sorted(before)
    torch.testing.assert_close(net(x, t, **extra), y_lora, atol=1e-5, rtol=0)


def test_adapter_file_round_trip_and_refusals(tmp_path):
    net, (x, t), _ = _randomised("dit")
    base_copy = {k: v.clone() for k, v in net.state_dict().items()}
    add_lora(net, rank=2, alpha=4.0, targets=["qkv.proj", "blocks.1.mlp.*"])
    assert sorted(lora_layers(net)) == [
        "blocks.0.qkv.proj",
        "blocks.1.mlp.0",
        "blocks.1.mlp.2",
        "blocks.1.qkv.proj",
    ]
    _randomise_adapters(net)
    y = net(x, t).detach()
    file = save_lora(net, tmp_path / "adapter.safetensors")
    with safe_open(str(file), framework="pt") as handle:
        keys, meta = sorted(handle.keys()), handle.metadata()
    assert keys and all(".lora_A.weight" in k or ".lora_B.weight" in k for k in keys)
    assert len(keys) == 8  # only the adapters, not the base
    assert json.loads(meta["lora"])["rank"] == 2 and json.loads(meta["lora"])["alpha"] == 4.0
    assert json.loads(meta["base"]) == base_fingerprint(base_copy)

    # A fresh copy of the base (no LoRA layers yet) gets the adapter: the same outputs.
    fresh, _, _ = _randomised("dit")
    load_lora(fresh, file)
    torch.testing.assert_close(fresh(x, t), y, atol=0, rtol=0)
    # Same architecture, other weights: refused, saying so.
    other, _, _ = _randomised("dit", seed=5)
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    with pytest.raises(UserError, match="same architecture but other weights"):
        load_lora(other, file)
    # Another architecture: refused, naming differing tensors.
    kwargs = dict(BACKBONES["dit"][0], hidden_size=16)
    with pytest.raises(UserError, match=r"another architecture.*shapes differ: blocks\.0"):
        load_lora(build_model("dit", **kwargs), file)
    # Not an adapter file at all.
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(UserError, match="not an interpolant LoRA adapter"):
        load_lora(fresh, tmp_path / "plain.safetensors")


def test_bad_options_are_refused_by_name():
    net, _, _ = _randomised("mlp")
    with pytest.raises(UserError, match=r"matches no Linear/Conv layer.*blocks\.0\.fc1"):
        add_lora(net, targets=["to_q"])
    with pytest.raises(UserError, match="rank must be an int >= 1"):
        add_lora(net, rank=0)
    with pytest.raises(UserError, match="no option 'rnak'"):
        TrainConfig(lora={"rnak": 4})
    add_lora(net)
    with pytest.raises(UserError, match="already holds LoRA layers"):
        add_lora(net)


def test_diffusers_models_through_the_adapter():
    diffusers = pytest.importorskip("diffusers")
    from interpolant.adapters import from_diffusers

    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=4,
        attention_head_dim=8,
    )
    betas = torch.linspace(1e-4, 0.02, 100, dtype=torch.float64)
    model = from_diffusers(unet, torch.cumprod(1 - betas, 0), "epsilon").eval()
    with torch.no_grad():  # diffusers zero-initialises nothing we need, but be explicit
        for p in unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([0.3, 0.8])
    eps = model(x, t).eps.detach()
    add_lora(model, rank=2)
    names = sorted(lora_layers(model))
    assert any(n.endswith("attentions.0.to_q") for n in names)
    assert any(n.endswith("resnets.0.conv1") for n in names)
    assert torch.equal(model(x, t).eps, eps)
    _randomise_adapters(model)
    out = model(x, t).eps
    out.square().mean().backward()
    assert all((p.grad is None) != p.requires_grad for p in model.parameters())
    merge_lora(model)
    torch.testing.assert_close(model(x, t).eps, out.detach(), atol=1e-5, rtol=0)

    dit = diffusers.DiTTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=1,
        out_channels=1,
        num_layers=1,
        sample_size=8,
        patch_size=2,
        num_embeds_ada_norm=10,
    )
    assert default_targets(dit) == [
        "transformer_blocks.0.attn1.to_q",
        "transformer_blocks.0.attn1.to_k",
        "transformer_blocks.0.attn1.to_v",
        "transformer_blocks.0.attn1.to_out.0",
        "transformer_blocks.0.ff.net.0.proj",
        "transformer_blocks.0.ff.net.2",
    ]


def _ring(shift: float) -> GaussianMixture:
    angles = torch.arange(4, dtype=torch.float64) * torch.pi / 2
    means = 1.5 * torch.stack([angles.cos(), angles.sin()], 1) + torch.tensor([shift, 0.0])
    return GaussianMixture(means, 0.05 * torch.eye(2, dtype=torch.float64).expand(4, 2, 2))


def _velocity_error(model: Model, oracle: GaussianMixture) -> float:
    """E |v_theta(x_t, t) - v*(x_t, t)|^2 against the oracle's exact velocity (fixed draws)."""
    g = torch.Generator().manual_seed(123)
    path = paths.Linear()
    x0 = oracle.sample(2000, generator=g)
    t = torch.rand(2000, generator=g, dtype=torch.float64).clamp(0.02, 0.98)
    x_t = path.sample_xt(x0, t, torch.randn(2000, 2, generator=g, dtype=torch.float64))
    exact = oracle.velocity(x_t, t, path)
    with torch.no_grad():
        got = model(x_t.float(), t.float()).velocity.double()
    return float((got - exact).square().sum(1).mean())


def _config(run_dir, **changes) -> dict:
    base = dict(
        run_dir=str(run_dir),
        device="cpu",
        steps=300,
        batch_size=128,
        lr=3e-3,
        ema="none",
        model={"name": "mlp", "dim": 2, "width": 64, "depth": 2},
        log_every=50,
        checkpoint_every=300,
        progress=False,
    )
    return {**base, **changes}


def test_lora_fine_tune_on_a_shifted_oracle(tmp_path):
    g = torch.Generator().manual_seed(0)
    base_oracle, shifted = _ring(0.0), _ring(1.0)
    base_run = train(_config(tmp_path / "base"), base_oracle.sample(4000, generator=g).float())
    base_weights = {k: v.clone() for k, v in base_run.module.state_dict().items()}
    error_before = _velocity_error(base_run.module, shifted)
    objective = Objective(paths.Linear(), target="velocity")
    x_eval = shifted.sample(1000, generator=torch.Generator().manual_seed(9)).float()

    def eval_loss(model):
        with torch.no_grad():
            return float(objective.loss(model, x_eval, torch.Generator().manual_seed(3)))

    loss_before = eval_loss(base_run.module)
    tuned = train(
        _config(
            tmp_path / "lora",
            lora={"rank": 4, "base": str(tmp_path / "base")},
            ema="halflife",
            ema_halflife_kimg=2.0,
        ),
        shifted.sample(4000, generator=g).float(),
    )
    module = tuned.module
    assert trainable_names(module) and all("lora_" in n for n in trainable_names(module))
    # The base weights are bitwise untouched.
    for key, value in base_state(module.state_dict()).items():
        assert torch.equal(value, base_weights[key]), key
    # Fine-tuning helped on the shifted data (objective on fixed draws, and the exact error).
    loss_after, error_after = eval_loss(module), _velocity_error(module, shifted)
    assert loss_after < 0.9 * loss_before, (loss_before, loss_after)
    assert error_after < 0.5 * error_before, (error_before, error_after)
    # The run wrote its (EMA) adapter; it loads onto the base alone and refuses another base.
    file = tmp_path / "lora" / "lora.safetensors"
    fresh = Model(build_model("mlp", dim=2, width=64, depth=2), paths.Linear(), "velocity")
    fresh.load_state_dict(base_weights)
    load_lora(fresh, file)
    assert _velocity_error(fresh, shifted) < 0.5 * error_before
    with pytest.raises(UserError, match="other weights"):
        load_lora(Model(build_model("mlp", dim=2, width=64, depth=2), paths.Linear()), file)
    # The run's checkpoints hold the base: it resumes without the base run.
    import shutil

    shutil.rmtree(tmp_path / "base")
    more = _config(
        tmp_path / "lora",
        lora={"rank": 4, "base": str(tmp_path / "base")},
        ema="halflife",
        ema_halflife_kimg=2.0,
        steps=302,
        checkpoint_every=301,
    )
    again = train(more, shifted.sample(4000, generator=g).float())
    assert again.step == 302
    for key, value in base_state(again.module.state_dict()).items():
        assert torch.equal(value, base_weights[key]), key


@pytest.mark.parametrize("name", ["dit", "unet"])
def test_adapters_get_the_same_gradients_under_gradient_checkpointing(name):
    net, (x, t), extra = _randomised(name)
    add_lora(net, rank=2)
    _randomise_adapters(net)
    net.train()  # checkpointing acts in training mode; these nets have no dropout

    def grads() -> dict:
        net.zero_grad(set_to_none=True)
        net(x, t, **extra).square().sum().backward()
        return {n: p.grad.clone() for n, p in net.named_parameters() if p.requires_grad}

    plain = grads()
    net.set_gradient_checkpointing(True)
    checkpointed = grads()
    assert sorted(plain) == sorted(checkpointed) and plain
    for key, value in plain.items():
        torch.testing.assert_close(checkpointed[key], value, rtol=1e-5, atol=1e-6)
