"""MM-DiT (SD3, Esser et al. 2024): two weight streams, joint attention, adaLN from time +
pooled vector (or class), QK-norm, context padding masks, zero initial output, errors."""

import pytest
import torch

from interpolant.models import MMDiT, build_model, count_parameters


def tiny(**kwargs) -> MMDiT:
    config = dict(
        context_dim=6, image_size=8, in_channels=1, patch_size=2, depth=2, hidden_size=32,
        num_heads=4, pooled_dim=5,
    )  # fmt: skip
    return MMDiT(**{**config, **kwargs})


def inputs(b: int = 3, length: int = 4):
    gen = torch.Generator().manual_seed(0)
    return (
        torch.randn(b, 1, 8, 8, generator=gen),
        torch.rand(b, generator=gen),
        torch.randn(b, length, 6, generator=gen),
        torch.randn(b, 5, generator=gen),
    )


def test_output_shape_and_zero_initial_output(randomize):
    x, t, ctx, pooled = inputs()
    net = tiny()
    assert torch.equal(net(x, t, context=ctx, pooled=pooled), torch.zeros_like(x))
    out = randomize(tiny(image_size=(8, 4), patch_size=4))(x[..., :4], t, context=ctx)
    assert out.shape == (3, 1, 8, 4) and out.abs().sum() > 0


def test_streams_have_separate_weights_and_last_block_reads_context_only():
    net = tiny(depth=3)
    first, last = net.blocks[0], net.blocks[-1]
    assert first.image_in.qkv.proj.weight is not first.context_in.qkv.proj.weight
    assert first.context_out is not None and last.context_out is None
    # The last block's context stream has only shift and scale: 2 * hidden modulation outputs.
    assert last.context_in.ada.out_features == 2 * 32
    assert first.image_in.qkv.q_norm is not None  # QK RMSNorm is always on (SD3 sec. 5.3.2)


def test_joint_attention_lets_context_change_the_image(randomize):
    net = randomize(tiny()).eval()
    x, t, ctx, pooled = inputs()
    out = net(x, t, context=ctx, pooled=pooled)
    assert not torch.allclose(net(x, t, context=ctx + 1.0, pooled=pooled), out, atol=1e-3)
    assert not torch.allclose(net(x, t, context=ctx, pooled=pooled + 1.0), out, atol=1e-3)
    assert not torch.allclose(net(x, t, context=None, pooled=pooled), out, atol=1e-3)


def test_masked_padding_equals_the_unpadded_context(randomize):
    net = randomize(tiny()).eval()
    x, t, ctx, pooled = inputs(length=3)
    padded = torch.cat([ctx, torch.randn(3, 2, 6)], dim=1)
    mask = torch.tensor([[True] * 3 + [False] * 2] * 3)
    short = net(x, t, context=ctx, pooled=pooled)
    assert torch.allclose(
        net(x, t, context=padded, context_mask=mask, pooled=pooled), short, atol=1e-5
    )


def test_batch_invariance(randomize):
    net = randomize(tiny(num_classes=4)).eval()
    x, t, ctx, pooled = inputs()
    y = torch.tensor([0, 4, 3])
    batch = net(x, t, context=ctx, pooled=pooled, class_labels=y)
    for i in range(3):
        one = net(x[i : i + 1], t[i : i + 1], context=ctx[i : i + 1], pooled=pooled[i : i + 1],
                  class_labels=y[i : i + 1])  # fmt: skip
        assert torch.allclose(batch[i : i + 1], one, atol=1e-5)
    # Null label == no label.
    assert torch.allclose(batch[1], net(x, t, context=ctx, pooled=pooled)[1], atol=1e-6)


def test_presets_and_meta_parameter_count():
    with torch.device("meta"):
        net = build_model("mmdit-s/2", context_dim=64)
    assert (len(net.blocks), net.config["hidden_size"], net.patch_size) == (12, 384, 2)
    # Per block: two streams of (6D^2 adaLN, 3D^2 qkv, D^2 out, 8D^2 MLP); the last block's
    # context stream keeps only 2D^2 adaLN + 3D^2 qkv. Embeddings and final layer on top.
    d = 384
    per_block = 2 * 18 * d * d
    blocks_only = sum(count_parameters(b) for b in net.blocks)
    assert blocks_only == pytest.approx(11 * per_block + (18 + 5) * d * d, rel=0.01)


def test_errors():
    net = tiny()
    x, t, ctx, pooled = inputs()
    with pytest.raises(ValueError, match=r"context must have shape \(3, L, 6\)"):
        net(x, t, context=torch.randn(3, 4, 7))
    with pytest.raises(ValueError, match=r"pooled must have shape \(3, 5\)"):
        net(x, t, context=ctx, pooled=torch.randn(3, 4))
    with pytest.raises(ValueError, match="pooled_dim=0"):
        tiny(pooled_dim=0)(x, t, context=ctx, pooled=pooled)
    with pytest.raises(ValueError, match="context_mask must be a bool tensor"):
        net(x, t, context=ctx, context_mask=torch.ones(3, 4))
    with pytest.raises(ValueError, match=r"MMDiT expects x of shape \(B, 1, 8, 8\)"):
        net(torch.randn(3, 2, 8, 8), t, context=ctx)
    with pytest.raises(ValueError, match="patch_size=3 must divide"):
        tiny(patch_size=3)


def test_traces_into_one_graph():
    net = tiny(num_classes=3)
    x, t, ctx, pooled = inputs()
    mask = torch.tensor([[True, True, False, False]] * 3)
    compiled = torch.compile(net, backend="eager", fullgraph=True)
    out = compiled(x, t, context=ctx, context_mask=mask, pooled=pooled)
    assert torch.equal(out, net(x, t, context=ctx, context_mask=mask, pooled=pooled))


@pytest.mark.slow
def test_torch_compile_inductor_matches_eager(randomize):
    net = randomize(tiny()).eval()
    x, t, ctx, pooled = inputs()
    compiled = torch.compile(net, fullgraph=True)
    expected = net(x, t, context=ctx, pooled=pooled)
    assert torch.allclose(compiled(x, t, context=ctx, pooled=pooled), expected, atol=1e-5)
