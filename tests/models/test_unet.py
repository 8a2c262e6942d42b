"""UNet (ADM/DDPM++ style): shapes from 8x8 digits to 64x64x3, zero-initialised output, skip
connections, time/class conditioning, batch invariance, errors."""

import pytest
import torch

from interpolant.models import UNet


def digits(**kwargs) -> UNet:
    config = dict(
        image_size=8, in_channels=1, model_channels=16, channel_mult=(1, 2), num_res_blocks=1,
        attn_resolutions=(4,), head_channels=16,
    )  # fmt: skip
    return UNet(**{**config, **kwargs})


@pytest.mark.parametrize(
    "size, channels, mult, attn",
    [
        (8, 1, (1, 2), (4,)),
        (32, 4, (1, 2, 2), (8,)),
        (64, 3, (1, 1, 2, 2), (8,)),
        ((8, 16), 2, (1, 2), ()),
    ],
)
def test_output_shape_and_zero_initial_output(size, channels, mult, attn, randomize):
    net = UNet(size, channels, model_channels=8, channel_mult=mult, num_res_blocks=1,
               attn_resolutions=attn, head_channels=8)  # fmt: skip
    h, w = (size, size) if isinstance(size, int) else size
    x = torch.randn(2, channels, h, w)
    assert torch.equal(net(x, torch.rand(2)), torch.zeros_like(x))
    out = randomize(net, std=0.05)(x, torch.rand(2))
    assert out.shape == x.shape and out.abs().sum() > 0


def test_attention_only_where_asked():
    net = digits(mid_attention=False)
    with_attn = [m for m in net.modules() if type(m).__name__ == "AttentionBlock"]
    # Encoder (1 block) + decoder (2 blocks) at resolution 4, none in the middle.
    assert len(with_attn) == 3
    assert all(m.heads == 2 for m in with_attn)  # 32 channels / 16 per head


def test_conditioning_batch_invariance_and_null_label(randomize):
    net = randomize(digits(num_classes=10), std=0.05).eval()
    x, t, y = torch.randn(3, 1, 8, 8), torch.rand(3), torch.tensor([1, 10, 9])
    out = net(x, t, class_labels=y)
    single = torch.cat(
        [net(x[i : i + 1], t[i : i + 1], class_labels=y[i : i + 1]) for i in range(3)]
    )
    assert torch.allclose(out, single, atol=1e-5)
    uncond = net(x, t)
    assert torch.allclose(out[1], uncond[1], atol=1e-6)
    assert not torch.allclose(out[0], uncond[0], atol=1e-4)
    assert not torch.allclose(net(x, t + 0.1, class_labels=y), out, atol=1e-4)


def test_gradients_reach_every_parameter(randomize):
    net = randomize(digits(num_classes=3), std=0.05)
    x, t, y = torch.randn(2, 1, 8, 8), torch.rand(2), torch.tensor([0, 2])
    net(x, t, class_labels=y).square().sum().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    # Only the rows of classes not in the batch (class 1, null class 3) get no gradient.
    assert missing == ["label_embed.table.weight"] or missing == []
    grad = net.label_embed.table.weight.grad
    assert grad[1].abs().sum() == 0 and grad[0].abs().sum() > 0


def test_errors():
    net = digits()
    with pytest.raises(ValueError, match=r"UNet expects x of shape \(B, 1, 8, 8\)"):
        net(torch.randn(2, 3, 8, 8), torch.rand(2))
    with pytest.raises(ValueError, match=r"UNet expects x of shape \(B, 1, 8, 8\)"):
        net(torch.randn(2, 1, 16, 16), torch.rand(2))
    with pytest.raises(ValueError, match="must be divisible by 4"):
        digits(image_size=6, channel_mult=(1, 2, 2))
    with pytest.raises(ValueError, match=r"attn_resolutions \[2\] are not among"):
        digits(attn_resolutions=(2,))
    with pytest.raises(ValueError, match="num_classes=0"):
        net(torch.randn(2, 1, 8, 8), torch.rand(2), class_labels=torch.tensor([0, 1]))
