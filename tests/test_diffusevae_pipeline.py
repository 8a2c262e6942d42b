"""DiffuseVAE's VAE stage, the channel-concat conditioning and the two-stage pipeline."""

from __future__ import annotations

import pytest
import torch

from interpolant.diffusevae import (
    ChannelConcat,
    ConvVAE,
    DiffuseVAE,
    Posterior,
    RefinerSettings,
    build_refiner,
    coarse_images,
    label_agreement,
    prior_latents,
    spread_ratio,
    train_refiner,
    train_vae,
)
from interpolant.diffusevae.vae import posterior_noise
from interpolant.errors import UserError
from interpolant.models import UNet
from interpolant.paths import VPLinear
from interpolant.randomness import Streams
from interpolant.solvers import Sampler

torch.set_num_threads(1)
TINY = RefinerSettings(model_channels=8, steps=3, batch_size=16)


def images(n: int = 48, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g) * 2 - 1


def test_kl_is_the_closed_form_of_torch_distributions() -> None:
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(4), torch.ones(4))
    expected = torch.distributions.kl_divergence(q, p).sum(1)
    assert torch.allclose(Posterior(mu, logvar).kl(), expected, atol=1e-6)


def test_vae_loss_is_reconstruction_plus_weighted_kl() -> None:
    torch.manual_seed(0)
    vae, x = ConvVAE((1, 8, 8), latent_dim=3, width=4), images(6)
    xi = torch.randn(6, 3)
    q = vae.encode(x)
    recon = ((vae.decode(q.sample(xi)) - x) / 2).square().flatten(1).sum(1)
    assert torch.allclose(vae.loss(x, xi, 0.0), recon)
    assert torch.allclose(vae.loss(x, xi, 2.0), recon + 2.0 * q.kl())
    out = vae.decode(torch.randn(6, 3))
    assert out.shape == x.shape and out.abs().max() <= 1.0


def test_per_sample_latents_do_not_depend_on_the_batch() -> None:
    vae = ConvVAE(latent_dim=4, width=4)
    full = prior_latents(vae, 7, 10)
    assert torch.equal(prior_latents(vae, 7, torch.tensor([3, 8])), full[[3, 8]])
    rows = torch.tensor([5, 1, 9])
    assert torch.equal(posterior_noise(1, rows, 4, 3)[1], posterior_noise(1, rows[1:2], 4, 3)[0])
    assert not torch.equal(posterior_noise(1, rows, 4, 3), posterior_noise(1, rows, 4, 4))


def test_train_vae_lowers_its_loss_and_checks_input() -> None:
    torch.manual_seed(1)
    vae = ConvVAE(latent_dim=4, width=8)
    losses = train_vae(vae, images(64), steps=20, batch_size=32, lr=3e-3, progress=False)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    with pytest.raises(UserError, match="images"):
        train_vae(vae, torch.zeros(4, 64), steps=1)
    with pytest.raises(UserError, match="square"):
        ConvVAE((1, 6, 6))
    with pytest.raises(UserError, match="shape"):
        vae.encode(torch.zeros(2, 1, 4, 4))
    means = coarse_images(vae, images(8))
    assert means.shape == (8, 1, 8, 8)
    assert torch.equal(
        coarse_images(vae, images(8), sample=False), vae.decode(vae.encode(images(8)).mu)
    )


def test_channel_concat_is_the_sliced_backbone_on_stacked_channels() -> None:
    torch.manual_seed(2)
    unet = UNet(
        image_size=8,
        in_channels=2,
        model_channels=8,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attn_resolutions=(),
    )
    torch.nn.init.normal_(unet.conv_out.weight)  # non-zero output to compare
    net = ChannelConcat(unet)
    x, m, t = images(4), images(4, 1), torch.rand(4)
    expected = unet(torch.cat([x, m], 1), t)[:, :1]
    assert torch.equal(net(x, t, prior_mean=m), expected)
    with pytest.raises(UserError, match="prior_mean"):
        net(x, t)
    with pytest.raises(UserError, match="spatial"):
        net(x, t, prior_mean=torch.zeros(4, 1, 4, 4))


@pytest.mark.parametrize("form", ["form1", "form2", "unconditional"])
def test_pipeline_trains_and_generates_batch_invariantly(form: str) -> None:
    vae = ConvVAE(latent_dim=4, width=4)
    data = images(32)
    means = None if form == "unconditional" else coarse_images(vae, data)
    refiner = train_refiner(form, data, means, TINY, seed=0)
    model = DiffuseVAE(vae, refiner, form)
    spec = Sampler("ddim", steps=3, grid="uniform")
    full = model.generate(6, spec, seed=3)
    assert full.x.shape == (6, 1, 8, 8) and torch.isfinite(full.x).all()
    part = model.generate(z=full.z[[1, 4]], index=torch.tensor([1, 4]), sampler=spec, seed=3)
    assert torch.allclose(part.x, full.x[[1, 4]], atol=1e-5)
    if form != "unconditional":
        assert torch.equal(full.x_hat, vae.decode(full.z))


def test_form2_starts_at_the_coarse_image_and_form1_at_zero() -> None:
    """One DDIM step from t_max to 0 with an untrained eps net (zero output: eps = 0) returns
    x0 = y / alpha(t_max): form 2 gives x_hat + (sigma / alpha)(t_max) noise, form 1 the same
    without x_hat (its start is centred at 0)."""
    vae = ConvVAE(latent_dim=4, width=4)
    spec = Sampler("ddim", steps=1, grid="uniform", t_max=0.5)
    noise = Streams(0, 8, "diffusevae-start").normal((1, 8, 8))
    t = torch.tensor(0.5, dtype=torch.float64)
    ratio = float(VPLinear().sigma(t) / VPLinear().alpha(t))
    for form in ("form1", "form2"):
        refiner = build_refiner(form, (1, 8, 8), TINY)  # zero-initialised output conv
        got = DiffuseVAE(vae, refiner, form).generate(8, spec, seed=0)
        shift = got.x_hat if form == "form2" else torch.zeros_like(got.x_hat)
        assert torch.allclose(got.x, shift + ratio * noise, atol=1e-5), form


def test_pipeline_errors() -> None:
    with pytest.raises(UserError, match="form"):
        build_refiner("form3", (1, 8, 8))
    with pytest.raises(UserError, match="prior mean"):
        train_refiner("form1", images(8), None, TINY)
    with pytest.raises(UserError, match="VAE"):
        DiffuseVAE(None, build_refiner("form1", (1, 8, 8), TINY), "form1")


def test_agreement_and_spread_on_known_groups() -> None:
    labels = torch.tensor([[1, 1, 1, 2], [3, 3, 3, 3]])
    assert label_agreement(labels) == pytest.approx(7 / 8)
    # Two groups at 0 and 10 with within-group offsets +-1 in one coordinate.
    x = torch.tensor([[[-1.0], [1.0]], [[9.0], [11.0]]])
    within = 4.0  # |(-1) - 1|^2
    between = (10**2 + 12**2 + 8**2 + 10**2) / 4  # pairs across groups
    assert spread_ratio(x) == pytest.approx(within / between)
    with pytest.raises(UserError):
        label_agreement(torch.tensor([1, 2]))
