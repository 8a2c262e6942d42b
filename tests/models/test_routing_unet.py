"""DTR routing in the UNet: no added parameters, full sharing is the plain UNet, masked-off
channels reach a level's output only through its skip, and named layers are checked."""

from __future__ import annotations

import pytest
import torch

from interpolant.errors import UserError
from interpolant.models import UNet
from interpolant.models.routing import TaskRouter

SMALL = dict(image_size=8, in_channels=1, model_channels=8, channel_mult=(1, 2), num_res_blocks=1)


def _nonzero(net: UNet) -> UNet:
    # The zero-initialised convs would hide the routing: give every layer random weights.
    torch.manual_seed(1)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return net


def test_routed_unet_adds_no_parameters_and_full_sharing_is_the_plain_unet():
    plain = _nonzero(UNet(**SMALL))
    routed = UNet(**SMALL, router="dtr")
    full = UNet(**SMALL, router={"sharing": 1.0})
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(plain) == count(routed) == count(full)
    routed.load_state_dict(plain.state_dict())
    full.load_state_dict(plain.state_dict())
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([0.1, 0.5, 0.9])
    torch.testing.assert_close(full(x, t), plain(x, t))
    assert not torch.allclose(routed(x, t), plain(x, t))
    assert routed.model_config()["router"] == "dtr"
    # One mask family per routed input width (8, 16 and the decoder's concatenations).
    assert set(routed.routers) == {str(w) for w in (8, 16, 32, 24)}


def test_a_routed_level_passes_masked_off_channels_through_its_skip_only():
    net = _nonzero(UNet(**SMALL, router={"sharing": 0.5, "tasks": 10}))
    level = net.mid[1]  # equal in/out channels and no attention: the skip is the identity
    t = torch.tensor([0.7])
    mask = net.routers["16"](t)
    assert torch.equal(mask, TaskRouter(16, tasks=10, sharing=0.5)(t))
    x, emb = torch.randn(1, 16, 4, 4), torch.randn(1, 32)
    jac = torch.autograd.functional.jacobian(lambda v: level(v, emb, mask), x)[0, :, :, :, 0]
    identity = torch.eye(16 * 16).reshape(16, 4, 4, 16, 4, 4)
    off = (mask[0] == 0).nonzero().flatten()
    on = (mask[0] == 1).nonzero().flatten()
    torch.testing.assert_close(jac[:, :, :, off], identity[:, :, :, off])
    assert float((jac[:, :, :, on] - identity[:, :, :, on]).abs().sum()) > 1e-3


def test_layers_select_levels_and_unknown_layers_list_the_existing_ones():
    net = UNet(**SMALL, router={"layers": ["mid", "up.0"]})
    assert net.routed == {"mid.0", "mid.1", "up.0"}
    assert net.level_names[:2] == ("down.0", "down.1") and "up.3" in net.level_names
    with pytest.raises(UserError, match=r"no layers \['blocks'\].*'down.0'"):
        UNet(**SMALL, router={"layers": ["blocks"]})
    with pytest.raises(UserError, match="list of level names"):
        UNet(**SMALL, router={"layers": "mid"})
