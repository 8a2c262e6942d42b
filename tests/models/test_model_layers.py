"""Shared layers: time embedding, label embedding with CFG dropout, positional embedding,
patchify/unpatchify, FLOP and parameter counting."""

import math

import pytest
import torch
from torch import nn

from interpolant.models import count_parameters, drop_labels, flops_per_forward
from interpolant.models.layers import (
    LabelEmbedding,
    PatchEmbed,
    TimestepEmbedding,
    sincos_pos_embed_2d,
    unpatchify,
)


def test_sinusoidal_time_features_match_formula():
    emb = TimestepEmbedding(dim=8, freq_dim=6, time_scale=1000.0, max_period=10000.0)
    t = torch.tensor([0.0, 0.25, -1.3])
    feats = emb.sinusoidal(t)
    for i, ti in enumerate(t.tolist()):
        for k in range(3):
            arg = 1000.0 * ti * 10000.0 ** (-k / 3)
            assert feats[i, k].item() == pytest.approx(math.cos(arg), abs=1e-4)
            assert feats[i, 3 + k].item() == pytest.approx(math.sin(arg), abs=1e-4)


@pytest.mark.parametrize("lo, hi", [(0.0, 1.0), (math.log(0.002) / 4, math.log(80.0) / 4)])
def test_time_embedding_resolves_both_conventions(lo, hi):
    # Neighbouring times on a 1000-point grid (t in [0, 1] or EDM's c_noise) stay distinct,
    # and the slowest frequency varies monotonically across the range (coarse position).
    emb = TimestepEmbedding(dim=8)
    t = torch.linspace(lo, hi, 1000)
    feats = emb.sinusoidal(t)
    gaps = (feats[1:] - feats[:-1]).norm(dim=1)
    assert gaps.min() > 0.05
    slowest = feats[:, 255]  # sin of the slowest frequency
    assert bool((slowest[1:] - slowest[:-1] > 0).all() or (slowest[1:] - slowest[:-1] < 0).all())


def test_label_dropout_frequency_with_seeded_generator():
    emb = LabelEmbedding(num_classes=10, dim=4, dropout_prob=0.3).train()
    labels = torch.randint(0, 10, (20000,), generator=torch.Generator().manual_seed(1))
    dropped = emb.drop(labels, torch.Generator().manual_seed(0))
    rate = (dropped == 10).float().mean().item()
    assert abs(rate - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 20000)
    # Kept labels are unchanged; the same seed gives the same mask.
    kept = dropped != 10
    assert torch.equal(dropped[kept], labels[kept])
    assert torch.equal(dropped, emb.drop(labels, torch.Generator().manual_seed(0)))
    assert torch.equal(dropped, drop_labels(labels, 10, 0.3, torch.Generator().manual_seed(0)))


def test_label_embedding_null_class_and_eval_mode():
    emb = LabelEmbedding(num_classes=5, dim=3, dropout_prob=1.0)
    labels = torch.tensor([0, 4, 5])
    # Training with p = 1: everything becomes the null class, which equals labels=None.
    null = emb(None, 3, torch.device("cpu"))
    assert torch.equal(emb.train()(labels, 3, torch.device("cpu")), null)
    # Evaluation never drops.
    out = emb.eval()(labels, 3, torch.device("cpu"))
    assert torch.equal(out, emb.table.weight[labels])
    assert torch.equal(out[2], null[0])


def test_label_embedding_errors():
    emb = LabelEmbedding(num_classes=5, dim=3)
    with pytest.raises(ValueError, match=r"class_labels must lie in \[0, 4\]"):
        emb(torch.tensor([0, 6]), 2, torch.device("cpu"))
    with pytest.raises(ValueError, match="class_labels must lie"):
        emb(torch.tensor([-1, 0]), 2, torch.device("cpu"))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        emb(torch.tensor([0, 1, 2]), 2, torch.device("cpu"))
    with pytest.raises(ValueError, match="integer tensor"):
        emb(torch.tensor([0.0, 1.0]), 2, torch.device("cpu"))
    with pytest.raises(ValueError, match="dropout_prob"):
        LabelEmbedding(5, 3, dropout_prob=1.5)


def test_sincos_pos_embed_structure():
    h, w, d = 3, 5, 16
    pe = sincos_pos_embed_2d(d, h, w).reshape(h, w, d)
    # First half depends on the column only, second half on the row only.
    assert torch.allclose(pe[:, :, : d // 2], pe[:1, :, : d // 2].expand(h, w, d // 2))
    assert torch.allclose(pe[:, :, d // 2 :], pe[:, :1, d // 2 :].expand(h, w, d // 2))
    # Position (0, 0): sin = 0, cos = 1 in every channel pair; column j, k = 0: sin(j).
    assert torch.equal(pe[0, 0], torch.tensor(([0.0] * 4 + [1.0] * 4) * 2))
    assert pe[0, 3, 0].item() == pytest.approx(math.sin(3.0), abs=1e-6)
    assert pe[2, 0, 8 + 4].item() == pytest.approx(math.cos(2.0), abs=1e-6)


def test_unpatchify_inverts_patch_flattening():
    b, c, h, w, p = 2, 3, 4, 6, 2
    x = torch.randn(b, c, h, w)
    # Token (i, j) = the patch x[:, :, ip:(i+1)p, jp:(j+1)p] flattened in (p, q, c) order.
    tokens = torch.stack(
        [
            x[:, :, i * p : (i + 1) * p, j * p : (j + 1) * p].permute(0, 2, 3, 1).reshape(b, -1)
            for i in range(h // p)
            for j in range(w // p)
        ],
        dim=1,
    )
    assert torch.equal(unpatchify(tokens, c, p, h, w), x)


def test_patch_embed_is_linear_map_of_each_patch():
    embed = PatchEmbed(in_channels=2, dim=5, patch_size=2)
    x = torch.randn(1, 2, 4, 4)
    tokens = embed(x)
    assert tokens.shape == (1, 4, 5)
    patch = x[0, :, 2:4, 0:2].reshape(-1)  # token index 2 = row 1, column 0
    expected = embed.proj.weight.reshape(5, -1) @ patch + embed.proj.bias
    assert torch.allclose(tokens[0, 2], expected, atol=1e-6)


def test_flops_of_linear_and_conv_are_analytic():
    # A multiply-add counts as 2 FLOPs.
    linear = nn.Linear(7, 3)
    assert flops_per_forward(linear, (torch.randn(5, 7),)) == 2 * 5 * 7 * 3
    conv = nn.Conv2d(2, 4, 3, padding=1)
    assert flops_per_forward(conv, (torch.randn(1, 2, 6, 6),)) == 2 * 36 * 4 * 2 * 9
    assert count_parameters(conv) == 4 * 2 * 9 + 4
    conv.bias.requires_grad_(False)
    assert count_parameters(conv, trainable_only=True) == 4 * 2 * 9
