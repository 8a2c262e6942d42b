"""The fused DiT path (one modulation GEMM, fused norm + modulate, multiply-add residuals) against
the reference path, and gradient checkpointing of DiT, MMDiT and UNet against no checkpointing:
same outputs, same gradients, same state dict."""

import pytest
import torch

from interpolant.errors import UserError
from interpolant.models import DiT, build_model


def dit(**kwargs) -> DiT:
    config = dict(image_size=8, in_channels=2, patch_size=2, depth=3, hidden_size=32, num_heads=4)
    return DiT(**{**config, **kwargs})


def loss_and_grads(net, x, t, **cond):
    net.zero_grad(set_to_none=True)
    out = net(x, t, **cond)
    loss = (out**2).mean()
    loss.backward()
    return out.detach(), {
        n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None
    }


@pytest.mark.parametrize("router", [None, "dtr"])
def test_fused_dit_matches_reference_to_1e5_in_float32(randomize, router):
    reference = randomize(dit(num_classes=5, router=router))
    fused = dit(num_classes=5, router=router, fused=True)
    # Same parameters and state dict: the reference checkpoint loads into the fused model.
    assert fused.state_dict().keys() == reference.state_dict().keys()
    fused.load_state_dict(reference.state_dict())
    x, t, y = torch.randn(4, 2, 8, 8), torch.rand(4), torch.tensor([0, 1, 4, 5])
    out_ref, grads_ref = loss_and_grads(reference.eval(), x, t, class_labels=y)
    out_fused, grads_fused = loss_and_grads(fused.eval(), x, t, class_labels=y)
    assert out_ref.abs().max() > 0.1  # randomised: every path contributes
    torch.testing.assert_close(out_fused, out_ref, rtol=1e-5, atol=1e-5)
    assert grads_fused.keys() == grads_ref.keys()
    for name in grads_ref:
        torch.testing.assert_close(grads_fused[name], grads_ref[name], rtol=1e-5, atol=1e-5)


def test_fused_dit_respects_skipped_blocks_and_is_recorded_in_the_config(randomize):
    reference = randomize(dit())
    fused = dit(fused=True)
    fused.load_state_dict(reference.state_dict())
    reference.skip_blocks = fused.skip_blocks = {1}
    x, t = torch.randn(2, 2, 8, 8), torch.rand(2)
    with torch.no_grad():
        torch.testing.assert_close(fused(x, t), reference(x, t), rtol=1e-5, atol=1e-5)
    assert fused.model_config()["fused"] is True and "fused" not in reference.model_config()
    rebuilt = build_model(**fused.model_config())
    assert isinstance(rebuilt, DiT) and rebuilt.fused


def test_fused_dit_initial_output_is_exactly_zero():
    # adaLN-Zero survives the fusion: the zero final layer gives an exactly zero output.
    out = dit(fused=True)(torch.randn(2, 2, 8, 8), torch.rand(2))
    assert torch.count_nonzero(out) == 0


def _builders():
    return {
        "dit": lambda: dit(num_classes=3),
        "dit-fused": lambda: dit(num_classes=3, fused=True),
        "mmdit": lambda: build_model(
            "mmdit",
            image_size=8,
            in_channels=2,
            patch_size=2,
            depth=2,
            hidden_size=32,
            num_heads=4,
            context_dim=6,
            num_classes=3,
        ),
        "unet": lambda: build_model(
            "unet",
            image_size=8,
            in_channels=2,
            model_channels=16,
            channel_mult=(1, 2),
            num_res_blocks=1,
            attn_resolutions=(4,),
            head_channels=16,
            dropout=0.3,  # the recomputation must replay the same dropout masks
            num_classes=3,
        ),
    }


@pytest.mark.parametrize("name", ["dit", "dit-fused", "mmdit", "unet"])
def test_gradient_checkpointing_gives_the_same_outputs_and_gradients(randomize, name):
    plain = randomize(_builders()[name]()).train()
    ckpt = _builders()[name]().train()
    ckpt.load_state_dict(plain.state_dict())
    ckpt.set_gradient_checkpointing(True)
    x, t, y = torch.randn(3, 2, 8, 8), torch.rand(3), torch.tensor([0, 2, 3])
    cond = {"class_labels": y}
    if name == "mmdit":
        cond["context"] = torch.randn(3, 5, 6)
    torch.manual_seed(7)
    out_plain, grads_plain = loss_and_grads(plain, x, t, **cond)
    torch.manual_seed(7)
    out_ckpt, grads_ckpt = loss_and_grads(ckpt, x, t, **cond)
    torch.testing.assert_close(out_ckpt, out_plain, rtol=0, atol=0)
    assert grads_ckpt.keys() == grads_plain.keys() and len(grads_plain) > 5
    for key in grads_plain:
        torch.testing.assert_close(grads_ckpt[key], grads_plain[key], rtol=1e-6, atol=1e-7)
    # A training-time setting: not in the config, the state dict is unchanged.
    assert ckpt.model_config() == plain.model_config()


def test_gradient_checkpointing_saves_activation_memory():
    # Count the bytes autograd keeps for backward through saved-tensor hooks.
    def saved_bytes(net) -> int:
        total = 0

        def pack(tensor):
            nonlocal total
            total += tensor.numel() * tensor.element_size()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            net(torch.randn(8, 2, 8, 8), torch.rand(8)).sum()
        return total

    plain, ckpt = dit(depth=6).train(), dit(depth=6).train()
    ckpt.set_gradient_checkpointing(True)
    assert saved_bytes(ckpt) < 0.4 * saved_bytes(plain)


def test_gradient_checkpointing_refused_where_unsupported():
    mlp = build_model("mlp", dim=2)
    with pytest.raises(UserError, match="does not support gradient checkpointing"):
        mlp.set_gradient_checkpointing(True)
    mlp.set_gradient_checkpointing(False)  # turning it off is always fine
