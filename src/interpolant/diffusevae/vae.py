"""DiffuseVAE's first stage: a small convolutional beta-VAE whose decoded images are the prior
means of the diffusion stage.

Loss (Pandey et al. 2022, sec. 3.1; the code's ``main/models/vae.py``) per image, on the [0, 1]
pixel scale that the paper's sigmoid decoder uses:

    L(x) = sum_pixels (Dec(z) - x)^2 + kl_weight * KL(q(z | x) || N(0, I)),
    z = mu(x) + exp(logvar(x) / 2) xi,  xi ~ N(0, I)   (reparameterisation),
    KL = -1/2 sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j)).

Images live in model space [-1, 1] (``interpolant.data``): the decoder returns
``x_hat = 2 sigmoid(h) - 1`` and the squared error is taken on ``(x_hat - x) / 2``. Every draw of
xi and of prior latents comes from the per-sample streams of :mod:`interpolant.randomness`, so
row i's latent does not depend on the batch it is in.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..errors import UserError
from ..randomness import Streams, derive_seed


@dataclass(frozen=True)
class Posterior:
    """q(z | x) = N(mu, diag(exp(logvar)))."""

    mu: Tensor
    logvar: Tensor

    def sample(self, xi: Tensor) -> Tensor:
        """The reparameterised draw mu + exp(logvar / 2) xi."""
        return self.mu + torch.exp(0.5 * self.logvar) * xi

    def kl(self) -> Tensor:
        """KL(q || N(0, I)) per row, shape (B,)."""
        return -0.5 * (1 + self.logvar - self.mu.square() - self.logvar.exp()).sum(dim=1)


class ConvVAE(nn.Module):
    """Convolutional VAE for small square images (C, s, s) with s divisible by 4.

    Encoder: two stride-2 3x3 convs (SiLU) to (2 width, s/4, s/4), flattened, a linear layer to
    (mu, logvar) of ``latent_dim``. Decoder: the mirror image with nearest upsampling + 3x3
    convs, ending in ``2 sigmoid - 1``.
    """

    def __init__(
        self, image_shape: tuple[int, int, int] = (1, 8, 8), latent_dim: int = 8, width: int = 32
    ):
        super().__init__()
        c, h, w = (int(v) for v in image_shape)
        if h != w or h % 4 or h < 4:
            raise UserError(
                f"ConvVAE needs square images with a side divisible by 4, got {image_shape}"
            )
        if latent_dim < 1 or width < 1:
            raise UserError(f"latent_dim and width must be >= 1, got {latent_dim}, {width}")
        self.image_shape, self.latent_dim, self.width = (c, h, w), int(latent_dim), int(width)
        side, flat = h // 4, 2 * width * (h // 4) ** 2
        self.encoder = nn.Sequential(
            nn.Conv2d(c, width, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Flatten(),
            nn.Linear(flat, 2 * latent_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, flat),
            nn.SiLU(),
            nn.Unflatten(1, (2 * width, side, side)),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(2 * width, width, 3, padding=1),
            nn.SiLU(),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(width, width, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(width, c, 3, padding=1),
        )

    def config(self) -> dict[str, object]:
        """The constructor's arguments (JSON-serialisable)."""
        return {
            "image_shape": list(self.image_shape),
            "latent_dim": self.latent_dim,
            "width": self.width,
        }

    def encode(self, x: Tensor) -> Posterior:
        """q(z | x) for images x (B, C, H, W) in [-1, 1]."""
        if tuple(x.shape[1:]) != self.image_shape:
            raise UserError(
                f"ConvVAE expects images of shape (B, {', '.join(map(str, self.image_shape))}), "
                f"got {tuple(x.shape)}"
            )
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return Posterior(mu, logvar.clamp(-20.0, 10.0))

    def decode(self, z: Tensor) -> Tensor:
        """x_hat = 2 sigmoid(Dec(z)) - 1, in [-1, 1]."""
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise UserError(f"z must have shape (B, {self.latent_dim}), got {tuple(z.shape)}")
        return 2.0 * torch.sigmoid(self.decoder(z)) - 1.0

    def loss(self, x: Tensor, xi: Tensor, kl_weight: float = 1.0) -> Tensor:
        """Per-image loss (B,): sum of squared errors on [0, 1] pixels + kl_weight * KL."""
        q = self.encode(x)
        x_hat = self.decode(q.sample(xi))
        recon = ((x_hat - x) / 2).square().flatten(1).sum(dim=1)
        return recon + kl_weight * q.kl()


def posterior_noise(seed: int, rows: Tensor, latent_dim: int, draw: int) -> Tensor:
    """xi of the reparameterisation for data rows ``rows`` at update ``draw`` (>= 1): the
    per-sample stream ``"vae-posterior"``, independent of the batch composition."""
    return Streams(seed, rows.cpu(), "vae-posterior").normal((latent_dim,), draw=draw)


def prior_latents(vae: ConvVAE, seed: int, index: int | Tensor, temperature: float = 1.0) -> Tensor:
    """z ~ N(0, temperature^2 I) for samples ``index`` (an int n means 0..n-1), per-sample
    stream ``"vae-prior"``."""
    z = Streams(seed, index, "vae-prior").normal((vae.latent_dim,))
    return temperature * z


def train_vae(
    vae: ConvVAE,
    data: Tensor,
    *,
    steps: int = 2000,
    batch_size: int = 128,
    lr: float = 2e-3,
    kl_weight: float = 1.0,
    seed: int = 0,
    progress: bool = True,
) -> list[float]:
    """Train ``vae`` on images ``data`` (N, C, H, W) in [-1, 1] with Adam (cosine learning rate)
    on the per-image loss :meth:`ConvVAE.loss`; returns the loss of every step. Batches are
    drawn with replacement-free epochs from a generator seeded by ``derive_seed``; the
    reparameterisation noise of row i at step k is the k-th draw of its own stream."""
    if data.ndim != 4 or data.shape[0] < 1:
        raise UserError(f"data must be images (N, C, H, W), got {tuple(data.shape)}")
    if steps < 1 or batch_size < 1:
        raise UserError(f"steps and batch_size must be >= 1, got {steps}, {batch_size}")
    if kl_weight < 0:
        raise UserError(f"kl_weight must be >= 0, got {kl_weight}")
    gen = torch.Generator().manual_seed(derive_seed("vae-batches", seed))
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=0.05 * lr)
    n, order, at = data.shape[0], torch.empty(0, dtype=torch.long), 0
    losses: list[float] = []
    vae.train()
    for step in tqdm(range(steps), desc="train VAE", disable=not progress):
        if at + batch_size > order.numel():  # a fresh epoch's order
            order, at = torch.randperm(n, generator=gen), 0
        rows = order[at : at + batch_size]
        at += batch_size
        xi = posterior_noise(seed, rows, vae.latent_dim, step + 1).to(data.dtype)
        loss = vae.loss(data[rows], xi, kl_weight).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    vae.eval()
    return losses


@torch.no_grad()
def coarse_images(vae: ConvVAE, x: Tensor, seed: int = 0, sample: bool = True) -> Tensor:
    """The VAE's coarse version of each image: Dec(z) with z ~ q(z | x) (one draw of the
    per-sample stream ``"vae-coarse"``), or Dec(mu(x)) with ``sample=False``."""
    q = vae.encode(x)
    if not sample:
        return vae.decode(q.mu)
    xi = Streams(seed, x.shape[0], "vae-coarse").normal((vae.latent_dim,)).to(x.dtype)
    return vae.decode(q.sample(xi))


__all__ = [
    "ConvVAE",
    "Posterior",
    "coarse_images",
    "posterior_noise",
    "prior_latents",
    "train_vae",
]
