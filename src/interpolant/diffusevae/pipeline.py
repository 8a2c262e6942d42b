"""DiffuseVAE's two stages put together: train the refiner, generate, measure controllability.

Three denoisers of one UNet size, all eps-prediction on one Gaussian path (Pandey et al. 2022,
sec. 3.2 and App. D):

* ``"form1"``: the plain path ``x_t = alpha x0 + sigma eps``, start ``N(0, sigma_max^2)``, the
  coarse image ``x_hat = Dec(z)`` as extra input channels (:class:`~.nets.ChannelConcat`).
* ``"form2"``: the shifted-mean path (:class:`~.shifted.ShiftedMean`), ``x_t = alpha (x0 - x_hat)
  + sigma eps + x_hat``, start ``N(x_hat, sigma_max^2)``, also with ``x_hat`` concatenated.
* ``"unconditional"``: the same UNet without the coarse channels, the baseline of equal size.

At training time the prior means are the VAE's reconstructions ``Dec(z), z ~ q(z | x)`` of the
training images (one draw per image, :func:`~.vae.coarse_images`); at generation time
``z ~ N(0, I)``. Generation is ``x_hat = Dec(z)`` then the refiner with any sampler spec.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..errors import UserError
from ..losses import Objective
from ..models import UNet, count_parameters
from ..paths import GaussianPath, VPLinear
from ..predictions import Model
from ..randomness import Streams, derive_seed
from ..solvers import Sampler, sample
from ..solvers.spec import as_sampler
from .nets import ChannelConcat
from .shifted import DEFAULT_KEY, ShiftedMean
from .vae import ConvVAE, prior_latents

FORMS = ("form1", "form2", "unconditional")


@dataclass(frozen=True)
class RefinerSettings:
    """The diffusion stage: UNet size and training schedule (Trainer defaults otherwise)."""

    model_channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2)
    num_res_blocks: int = 1
    steps: int = 2000
    batch_size: int = 128
    lr: float = 2e-3
    ema_halflife_kimg: float = 20.0
    progress: bool = False
    unet: dict[str, Any] = field(default_factory=dict)


def check_form(form: str) -> str:
    """Validate a form name."""
    if form not in FORMS:
        raise UserError(f"form must be one of {FORMS}, got {form!r}")
    return form


def build_refiner(
    form: str,
    image_shape: tuple[int, int, int],
    settings: RefinerSettings | None = None,
    path: GaussianPath | None = None,
) -> Model:
    """The eps-predicting UNet of ``form`` on ``path`` (default VP-linear, DDPM's continuous
    limit). Forms 1 and 2 see ``in_channels = 2 C`` (x_t and the coarse image)."""
    s = settings or RefinerSettings()
    c, h, _ = image_shape
    conditioned = check_form(form) != "unconditional"
    unet = UNet(
        image_size=h,
        in_channels=2 * c if conditioned else c,
        model_channels=s.model_channels,
        channel_mult=s.channel_mult,
        num_res_blocks=s.num_res_blocks,
        attn_resolutions=(),
        **s.unet,
    )
    net: torch.nn.Module = ChannelConcat(unet) if conditioned else unet
    return Model(net, path if path is not None else VPLinear(), predicts="eps")


def train_refiner(
    form: str,
    data: Tensor,
    prior_means: Tensor | None,
    settings: RefinerSettings | None = None,
    seed: int = 0,
    path: GaussianPath | None = None,
    run_dir: str | None = None,
) -> Model:
    """Train the denoiser of ``form`` on images ``data`` (N, C, H, W) with their prior means
    (N, C, H, W; None for ``"unconditional"``) through the library's Trainer (the means reach
    the network as ``cond["prior_mean"]``); returns the model with its EMA weights, eval mode."""
    from ..train import TrainConfig, Trainer

    s = settings or RefinerSettings()
    check_form(form)
    if form != "unconditional" and (prior_means is None or prior_means.shape != data.shape):
        got = None if prior_means is None else tuple(prior_means.shape)
        raise UserError(
            f"{form} needs one prior mean per image, shape {tuple(data.shape)}; got {got}"
        )
    torch.manual_seed(derive_seed(f"diffusevae-init-{form}", seed))
    model = build_refiner(form, tuple(data.shape[1:]), s, path)  # type: ignore[arg-type]
    objective: Any = Objective(model.path, target="eps")
    if form == "form2":
        shift = ShiftedMean(model.path)
        model, objective = shift.model(model), shift.objective(objective)
    labels = None if form == "unconditional" else prior_means
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(
            run_dir=run_dir or tmp,
            seed=seed,
            steps=s.steps,
            batch_size=s.batch_size,
            lr=s.lr,
            lr_schedule="cosine",
            ema_halflife_kimg=s.ema_halflife_kimg,
            device="cpu",
            cond_key=DEFAULT_KEY,
            log_every=s.steps,
            checkpoint_every=s.steps,
            keep_checkpoints=1,
            resume=False,
            progress=s.progress,
        )
        trainer = Trainer(model, objective, data, config, labels)
        try:
            trainer.run()
            trainer.module.load_state_dict(trainer.averaged_state())
        finally:
            trainer.close()
    return model.eval()


@dataclass
class Generated:
    """Refined samples ``x``, their coarse images ``x_hat``, latents ``z`` and the refiner's
    network evaluations per sample (``nfe``)."""

    x: Tensor
    x_hat: Tensor
    z: Tensor
    nfe: int = 0


class DiffuseVAE:
    """A VAE generator and a diffusion refiner of one of :data:`FORMS`.

    ``generate`` draws ``z ~ N(0, I)`` (or takes ``z``), decodes ``x_hat = Dec(z)`` and refines it
    with the sampler spec; the start noise of sample i is the stream ``"diffusevae-start"`` at
    index i, independent of the batch, so equal z with different indices differ only in the
    diffusion noise (the controllability experiment).
    """

    def __init__(self, vae: ConvVAE | None, refiner: Model, form: str):
        self.form = check_form(form)
        if form != "unconditional" and vae is None:
            raise UserError(f"{form} needs the VAE that makes its prior means")
        self.vae, self.refiner = vae, refiner
        self.shift = ShiftedMean(refiner.path) if form == "form2" else None

    def parameters(self) -> dict[str, int]:
        """Parameter counts of the two stages."""
        out = {"refiner": count_parameters(self.refiner)}
        if self.vae is not None:
            out["vae"] = count_parameters(self.vae)
        return out

    @torch.no_grad()
    def generate(
        self,
        n: int | None = None,
        sampler: Sampler | None = None,
        *,
        seed: int = 0,
        z: Tensor | None = None,
        index: Tensor | None = None,
        **options: Any,
    ) -> Generated:
        """``n`` samples (or one per row of ``z``); ``index`` numbers the rows' start-noise
        streams (default 0..B-1). ``options`` are :class:`Sampler` shortcuts (steps=, solver=)."""
        spec = sampler if sampler is not None else Sampler("ddim", steps=10, grid="uniform")
        if options:
            spec = as_sampler(spec, **options)
        if z is None:
            if n is None or self.vae is None:
                raise UserError("give n (and a VAE) to draw z, or pass z")
            z = prior_latents(self.vae, seed, n if index is None else index)
        rows = z.shape[0]
        index = torch.arange(rows) if index is None else torch.as_tensor(index)
        if index.shape != (rows,):
            raise UserError(f"index must have {rows} entries, got shape {tuple(index.shape)}")
        shape = self._image_shape()
        noise = Streams(seed, index, "diffusevae-start").normal(shape)
        if self.form == "unconditional":
            result = sample(self.refiner, noise, spec, index=index)
            return Generated(result.x, torch.zeros_like(result.x), z, result.nfe)
        assert self.vae is not None
        x_hat = self.vae.decode(z.to(noise.dtype))
        cond = {DEFAULT_KEY: x_hat}
        if self.shift is not None:
            result = self.shift.sample(self.refiner, noise, spec, cond=cond, index=index)
        else:
            result = sample(self.refiner, noise, spec, cond=cond, index=index)
        return Generated(result.x, x_hat, z, result.nfe)

    def _image_shape(self) -> tuple[int, ...]:
        if self.vae is not None:
            return self.vae.image_shape
        net: Any = self.refiner.net
        return (net.in_channels, net.height, net.width)


def label_agreement(labels: Tensor) -> float:
    """Fraction of samples that share the most common label of their group: ``labels`` (K, R)
    holds the classifier's labels of R refinements of each of K coarse images."""
    if labels.ndim != 2 or labels.shape[1] < 2:
        raise UserError(f"labels must be (groups, >= 2 repeats), got {tuple(labels.shape)}")
    modal = labels.mode(dim=1).values
    return float((labels == modal[:, None]).to(torch.float64).mean())


def spread_ratio(x: Tensor) -> float:
    """Mean squared distance between refinements of the same coarse image over that between
    samples of different coarse images; ``x`` (K, R, ...). Below 1: z fixes the structure."""
    if x.ndim < 3 or x.shape[0] < 2 or x.shape[1] < 2:
        raise UserError(f"x must be (groups >= 2, repeats >= 2, ...), got {tuple(x.shape)}")
    flat = x.flatten(2).to(torch.float64)
    k, r = flat.shape[:2]
    within = torch.cdist(flat, flat).square().sum() / (k * r * (r - 1))
    everything = flat.reshape(k * r, -1)
    total = torch.cdist(everything, everything).square().sum()
    between = (total - torch.cdist(flat, flat).square().sum()) / (k * r * (k * r - r))
    return float(within / between)


__all__ = [
    "FORMS",
    "DiffuseVAE",
    "Generated",
    "RefinerSettings",
    "build_refiner",
    "check_form",
    "label_agreement",
    "spread_ratio",
    "train_refiner",
]
