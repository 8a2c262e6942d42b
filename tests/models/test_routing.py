"""Denoising task routing: the masks as the paper's code builds them, their sharing between
adjacent tasks, the routed block's algebra, and no added parameters."""

from __future__ import annotations

import pytest
import torch

from interpolant.errors import UserError
from interpolant.models import MLP
from interpolant.models.routing import TaskRouter, router_options


def test_sliding_masks_have_the_window_of_the_formula():
    router = TaskRouter(channels=20, tasks=11, sharing=0.8, alpha=2.0)
    n_on, last = 16, 4
    for k in range(11):
        start = round((k / 10) ** 2 * last)
        expected = torch.zeros(20)
        expected[start : start + n_on] = 1
        torch.testing.assert_close(router.masks[k], expected)
    # alpha > 1: the window moves slowly at small t, fast at large t.
    starts = router.masks.argmax(dim=1)
    assert int(starts[5] - starts[0]) < int(starts[10] - starts[5])
    # Adjacent tasks share at least n_on - (largest move) channels.
    shared = (router.masks[1:] * router.masks[:-1]).sum(1)
    assert float(shared.min()) >= n_on - float((starts[1:] - starts[:-1]).max())


def test_random_masks_are_seeded_and_have_n_on_channels():
    a = TaskRouter(32, tasks=5, init="random", seed=1)
    b = TaskRouter(32, tasks=5, init="random", seed=1)
    c = TaskRouter(32, tasks=5, init="random", seed=2)
    assert torch.equal(a.masks, b.masks) and not torch.equal(a.masks, c.masks)
    assert a.masks.sum(1).tolist() == [25.0] * 5


def test_times_are_binned_to_tasks():
    router = TaskRouter(8, tasks=1000)
    t = torch.tensor([0.0, 0.5, 1.0, 0.0004, 0.0006])
    assert router.task_of(t).tolist() == [0, 500, 999, 0, 1]
    assert router(t).shape == (5, 8)


def test_routed_mlp_adds_no_parameters_and_full_sharing_is_the_plain_mlp():
    torch.manual_seed(0)
    plain = MLP(dim=4, width=16, depth=2)
    torch.manual_seed(0)
    routed = MLP(dim=4, width=16, depth=2, router="dtr")
    torch.manual_seed(0)
    full = MLP(dim=4, width=16, depth=2, router={"sharing": 1.0})
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(plain) == count(routed) == count(full)
    for net in (plain, routed, full):
        torch.nn.init.normal_(net.fc_out.weight)  # non-zero output layer
    routed.load_state_dict(plain.state_dict())
    full.load_state_dict(plain.state_dict())
    x, t = torch.randn(6, 4), torch.rand(6)
    torch.testing.assert_close(full(x, t), plain(x, t))
    assert not torch.allclose(routed(x, t), plain(x, t))
    assert routed.model_config()["router"] == "dtr"


def test_masked_channels_reach_the_update_only_through_the_identity():
    # h + Delta(m h): d out / d h on a masked-off channel is exactly the identity's column.
    router = TaskRouter(8, tasks=10, sharing=0.5)
    net = MLP(dim=8, width=8, depth=1, layer_norm=False)
    block, t = net.blocks[0], torch.tensor([0.3])
    mask = router(t)
    h = torch.randn(1, 8, requires_grad=True)
    emb = torch.randn(1, 8)
    jac = torch.autograd.functional.jacobian(lambda v: block(v, emb, mask), h)[0, :, 0, :]
    off = (mask[0] == 0).nonzero().flatten()
    torch.testing.assert_close(jac[:, off], torch.eye(8)[:, off])


def test_router_options_refuse_bad_specs():
    assert router_options(None) is None and router_options("dtr") == {}
    with pytest.raises(UserError, match="no option"):
        router_options({"share": 0.5})
    with pytest.raises(UserError, match="router must be"):
        router_options("moe")
    with pytest.raises(UserError, match="sharing must be"):
        TaskRouter(8, sharing=0.0)


def test_routed_dit_full_sharing_is_the_plain_dit_and_dtr_changes_trained_blocks():
    from interpolant.models import DiT

    kwargs = dict(image_size=8, in_channels=1, patch_size=2, depth=2, hidden_size=32, num_heads=2)
    plain, routed, full = (
        DiT(**kwargs),
        DiT(**kwargs, router="dtr"),
        DiT(**kwargs, router={"sharing": 1.0}),
    )
    gen = torch.Generator().manual_seed(0)
    for p in plain.parameters():  # away from adaLN-Zero's identity initialisation
        p.data = 0.3 * torch.randn(p.shape, generator=gen)
    routed.load_state_dict(plain.state_dict())
    full.load_state_dict(plain.state_dict())
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(plain) == count(routed)
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([0.1, 0.5, 0.9])
    with torch.no_grad():
        torch.testing.assert_close(full(x, t), plain(x, t))
        assert not torch.allclose(routed(x, t), plain(x, t))
