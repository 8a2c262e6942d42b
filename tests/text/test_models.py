"""Text transformers: rotary attention depends on relative positions only, the causal model is
causal and its likelihood sums to one over all sequences, batch invariance, config round trip."""

from itertools import product

import pytest
import torch
import torch.nn.functional as F

from interpolant.text.models import (
    CausalTransformer,
    DiffusionTransformer,
    apply_rotary,
    build_text_model,
    rotary_tables,
)


def test_rotary_scores_depend_on_position_differences_only():
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 1, 2, 6, 16, generator=gen)
    cos, sin = rotary_tables(6 + 5, 16)
    scores = []
    for offset in (0, 5):
        c, s = cos[offset : offset + 6], sin[offset : offset + 6]
        scores.append(apply_rotary(q, c, s) @ apply_rotary(k, c, s).transpose(-1, -2))
    torch.testing.assert_close(scores[0], scores[1], atol=1e-5, rtol=1e-5)
    # Rotations keep norms, and position 0 is not rotated.
    rq = apply_rotary(q, cos[:6], sin[:6])
    torch.testing.assert_close(rq.norm(dim=-1), q.norm(dim=-1))
    torch.testing.assert_close(rq[..., 0, :], q[..., 0, :])
    # Shifted attention outputs agree too (SDPA over rotated q, k).
    outs = [
        F.scaled_dot_product_attention(
            apply_rotary(q, cos[o : o + 6], sin[o : o + 6]),
            apply_rotary(k, cos[o : o + 6], sin[o : o + 6]),
            k,
        )
        for o in (0, 3)
    ]
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)


def test_the_denoiser_sees_positions():
    # Without positions a transformer is permutation-equivariant; RoPE breaks that.
    torch.manual_seed(0)
    net = DiffusionTransformer(5, dim=32, depth=2, heads=2).eval()
    x = torch.tensor([[0, 1, 2, 3, 4, 5]])
    perm = torch.tensor([5, 3, 1, 0, 2, 4])
    out, out_perm = net(x), net(x[:, perm])
    assert not torch.allclose(out[:, perm], out_perm, atol=1e-4)


def _bigger(net):
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(20.0)  # far from uniform so the sum-to-one check is not trivial
    return net.eval()


def test_causal_likelihood_sums_to_one_over_all_sequences():
    torch.manual_seed(0)
    net = _bigger(CausalTransformer(3, dim=16, depth=2, heads=2))
    seqs = torch.tensor(list(product(range(3), repeat=4)))
    with torch.no_grad():
        logp = net.log_prob(seqs).double()
    assert float(torch.logsumexp(logp, 0)) == pytest.approx(0.0, abs=1e-5)
    assert float(logp.max() - logp.min()) > 1.0  # not the uniform law


def test_causal_model_is_causal():
    torch.manual_seed(1)
    net = CausalTransformer(4, dim=16, depth=2, heads=2).eval()
    x = torch.randint(0, 4, (1, 7))
    y = x.clone()
    y[0, 4] = (x[0, 4] + 1) % 4
    a, b = net(x), net(y)
    torch.testing.assert_close(a[:, :5], b[:, :5])  # positions <= 4 predict from x_<i only
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_denoiser_shapes_mask_id_time_and_batch_invariance():
    torch.manual_seed(2)
    net = DiffusionTransformer(6, dim=32, depth=1, heads=2).eval()
    x = torch.tensor([[0, 6, 2, 6], [5, 4, 6, 1]])  # 6 = mask id
    out = net(x, torch.tensor([0.3, 0.9]))
    assert out.shape == (2, 4, 6)
    torch.testing.assert_close(out[1:], net(x[1:], torch.tensor([0.1])))  # time-agnostic
    timed = DiffusionTransformer(6, dim=32, depth=1, heads=2, time_conditioning=True).eval()
    assert not torch.allclose(timed(x, torch.full((2,), 0.2)), timed(x, torch.full((2,), 0.8)))
    torch.testing.assert_close(
        timed(x, torch.full((2,), 0.2))[:1], timed(x[:1], torch.tensor([0.2]))
    )
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 6\]"):
        net(torch.tensor([[7, 0]]))
    with pytest.raises(ValueError, match="pass t"):
        timed(x)
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 5\]"):
        CausalTransformer(6, dim=16, heads=2)(x)  # the mask is no input of the AR model


def test_config_round_trip_rebuilds_the_same_function():
    torch.manual_seed(3)
    for net in (
        DiffusionTransformer(5, dim=32, depth=2, heads=4, time_conditioning=True),
        CausalTransformer(5, dim=32, depth=1, heads=2),
    ):
        copy = build_text_model(net.config())
        copy.load_state_dict(net.state_dict())
        x, t = torch.randint(0, 5, (3, 8)), torch.rand(3)
        torch.testing.assert_close(copy.eval()(x, t), net.eval()(x, t))
    with pytest.raises(ValueError, match="dim / heads must be an even integer"):
        DiffusionTransformer(5, dim=30, heads=4)
    with pytest.raises(ValueError, match="model kind"):
        build_text_model({"kind": "rnn", "vocab_size": 3})
