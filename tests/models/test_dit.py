"""DiT (Peebles & Xie 2023): shapes, adaLN-Zero initialisation, class conditioning, the paper's
parameter counts and FLOPs, QK-norm, bf16 autocast, compile without graph breaks, errors."""

import pytest
import torch

from interpolant.models import DiT, build_model, count_parameters, flops_per_forward


def tiny(**kwargs) -> DiT:
    config = dict(image_size=8, in_channels=1, patch_size=2, depth=2, hidden_size=32, num_heads=4)
    return DiT(**{**config, **kwargs})


@pytest.mark.parametrize(
    "image_size, channels, patch",
    [(8, 1, 2), (8, 1, 4), (8, 1, 1), ((8, 12), 3, 4), (16, 4, 8)],
)
def test_output_shape(image_size, channels, patch, randomize):
    net = randomize(tiny(image_size=image_size, in_channels=channels, patch_size=patch))
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    x = torch.randn(3, channels, h, w)
    out = net(x, torch.rand(3))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.abs().sum() > 0


def test_adaln_zero_initial_output_is_exactly_zero():
    net = tiny(num_classes=10)
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(
        net(x, torch.rand(2), class_labels=torch.tensor([1, 3])), torch.zeros_like(x)
    )
    # Every block starts as the identity map (gates are zero).
    tokens, c = torch.randn(2, 16, 32), torch.randn(2, 32)
    for block in net.blocks:
        assert torch.equal(block(tokens, c), tokens)


def test_class_conditioning_and_null_label(randomize):
    net = randomize(tiny(num_classes=10)).eval()
    x, t = torch.randn(3, 1, 8, 8), torch.rand(3)
    uncond = net(x, t)
    # The null index (num_classes) is the unconditional model, sample by sample.
    mixed = net(x, t, class_labels=torch.tensor([2, 10, 7]))
    assert torch.allclose(mixed[1], uncond[1], atol=1e-6)
    assert not torch.allclose(mixed[0], uncond[0], atol=1e-3)
    with pytest.raises(ValueError, match=r"class_labels must lie in \[0, 9\]"):
        net(x, t, class_labels=torch.tensor([0, 11, 2]))
    with pytest.raises(ValueError, match="num_classes=0"):
        tiny()(x, t, class_labels=torch.tensor([0, 1, 2]))


def test_label_dropout_in_training_uses_the_generator(randomize):
    net = randomize(tiny(num_classes=10, class_dropout_prob=0.5))
    x, t, y = torch.randn(8, 1, 8, 8), torch.rand(8), torch.arange(8)
    a = net.train()(x, t, class_labels=y, generator=torch.Generator().manual_seed(3))
    b = net(x, t, class_labels=y, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    dropped = net.label_embed.drop(y, torch.Generator().manual_seed(3))
    assert torch.allclose(a, net.eval()(x, t, class_labels=dropped), atol=1e-6)


def test_batch_invariance_and_time_dependence(randomize):
    net = randomize(tiny(num_classes=5)).eval()
    x, t, y = torch.randn(4, 1, 8, 8), torch.rand(4), torch.tensor([0, 1, 2, 5])
    batch = net(x, t, class_labels=y)
    single = torch.cat(
        [net(x[i : i + 1], t[i : i + 1], class_labels=y[i : i + 1]) for i in range(4)]
    )
    assert torch.allclose(batch, single, atol=1e-5)
    assert not torch.allclose(net(x, t + 0.1, class_labels=y), batch, atol=1e-3)


def test_qk_norm_makes_attention_invariant_to_qk_scale(randomize):
    # RMSNorm(a q) = RMSNorm(q): scaling the q and k projections changes nothing with QK-norm.
    x, t = torch.randn(2, 1, 8, 8), torch.rand(2)
    for qk_norm in (True, False):
        net = randomize(tiny(qk_norm=qk_norm, depth=1)).eval()
        before = net(x, t)
        with torch.no_grad():
            proj = net.blocks[0].qkv.proj
            proj.weight[: 2 * 32] *= 10.0
            proj.bias[: 2 * 32] *= 10.0
        changed = not torch.allclose(net(x, t), before, atol=1e-4)
        assert changed != qk_norm


def test_learned_positional_embedding_is_a_parameter():
    learned = tiny(pos_embed="learned")
    fixed = tiny()
    assert count_parameters(learned) - count_parameters(fixed) == 16 * 32
    assert "pos_embed" not in dict(fixed.named_parameters())


def test_bf16_autocast_close_to_float32(randomize):
    net = randomize(tiny(num_classes=4, qk_norm=True), std=0.05).eval()
    x, t, y = torch.randn(2, 1, 8, 8), torch.rand(2), torch.tensor([1, 2])
    ref = net(x, t, class_labels=y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = net(x, t, class_labels=y)
    assert low.dtype == torch.bfloat16
    assert (low.float() - ref).norm() / ref.norm() < 0.05


# Paper (Table 4 / fig. 2): parameters (M) and multiply-adds ("Gflops", counted by fvcore).
PAPER = {"dit-s/2": (33.0, 6.06), "dit-b/2": (130.0, 23.01), "dit-xl/2": (675.0, 118.64)}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_parameter_counts_and_flops_on_meta_device(name):
    params_m, gmacs = PAPER[name]
    with torch.device("meta"):
        net = build_model(name, image_size=32, in_channels=4, num_classes=1000)
        x, t, y = torch.empty(1, 4, 32, 32), torch.empty(1), torch.zeros(1, dtype=torch.long)
    assert count_parameters(net) / 1e6 == pytest.approx(params_m, rel=0.02)
    # FlopCounterMode counts a multiply-add as 2 FLOPs; the paper's Gflops are multiply-adds.
    flops = flops_per_forward(net, (x, t), {"class_labels": y})
    assert flops / 2e9 == pytest.approx(gmacs, rel=0.02)


def test_training_step_is_about_three_forwards(randomize):
    from torch.utils.flop_counter import FlopCounterMode

    net = randomize(tiny(depth=2, hidden_size=64))
    x, t = torch.randn(2, 1, 8, 8), torch.rand(2)
    forward = flops_per_forward(net, (x, t))
    with FlopCounterMode(display=False) as counter:
        net(x, t).square().mean().backward()
    assert 2.5 < counter.get_total_flops() / forward < 3.05


def test_presets_and_errors():
    with torch.device("meta"):
        net = build_model("dit-l/4", image_size=32)
    assert (len(net.blocks), net.config["hidden_size"], net.patch_size) == (24, 1024, 4)
    with pytest.raises(ValueError, match="fixes"):
        build_model("dit-s/2", depth=3)
    with pytest.raises(ValueError, match="patch_size=3 must divide"):
        tiny(patch_size=3)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        tiny(num_heads=5)
    net = tiny()
    with pytest.raises(ValueError, match=r"DiT expects x of shape \(B, 1, 8, 8\)"):
        net(torch.randn(2, 3, 8, 8), torch.rand(2))
    with pytest.raises(ValueError, match=r"DiT expects x of shape \(B, 1, 8, 8\)"):
        net(torch.randn(2, 1, 16, 16), torch.rand(2))
    with pytest.raises(ValueError, match=r"t must have shape \(2,\)"):
        net(torch.randn(2, 1, 8, 8), torch.rand(3))


def test_traces_into_one_graph():
    # fullgraph=True fails on any graph break; the eager backend skips code generation.
    net = tiny(num_classes=3, qk_norm=True).train()
    compiled = torch.compile(net, backend="eager", fullgraph=True)
    x, t, y = torch.randn(2, 1, 8, 8), torch.rand(2), torch.tensor([0, 2])
    compiled(x, t, class_labels=y).sum().backward()
    assert net.blocks[0].ada.weight.grad is not None


@pytest.mark.slow
def test_torch_compile_inductor_matches_eager(randomize):
    net = randomize(tiny(num_classes=3, qk_norm=True)).eval()
    x, t, y = torch.randn(2, 1, 8, 8), torch.rand(2), torch.tensor([0, 3])
    compiled = torch.compile(net, fullgraph=True)
    assert torch.allclose(compiled(x, t, class_labels=y), net(x, t, class_labels=y), atol=1e-5)


@pytest.mark.parametrize("fused", [False, True])
def test_traces_with_a_symbolic_batch_size(fused):
    # A compiled network recompiles with a symbolic batch for its second batch size; label
    # dropout must not need a concrete size there (it used torch.rand(labels.shape)).
    net = tiny(num_classes=3, fused=fused).train()
    compiled = torch.compile(net, backend="aot_eager", fullgraph=True, dynamic=True)
    for batch in (3, 2):
        x, t, y = (
            torch.randn(batch, 1, 8, 8),
            torch.rand(batch),
            torch.zeros(batch, dtype=torch.long),
        )
        assert compiled(x, t, class_labels=y).shape == x.shape
