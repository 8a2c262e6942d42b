"""DiffuseVAE (seed paper 26, Pandey et al. 2022): a VAE's coarse output as the diffusion prior.

* :mod:`.shifted`: the generic shifted-mean path ``x_t = alpha (x0 - m) + sigma eps + m`` around
  a per-sample prior mean ``m = cond["prior_mean"]``, on any Gaussian path and with any solver
  (form 2 of the paper, usable with any coarse generator).
* :mod:`.nets`: the coarse image as extra input channels of any image backbone (form 1).
* :mod:`.vae`: the small convolutional beta-VAE of the first stage and its training.
* :mod:`.pipeline`: training the refiner through the library's Trainer, generation, and the
  controllability measures (same z, different diffusion noise).
"""

from .nets import ChannelConcat
from .pipeline import (
    FORMS,
    DiffuseVAE,
    Generated,
    RefinerSettings,
    build_refiner,
    label_agreement,
    spread_ratio,
    train_refiner,
)
from .shifted import DEFAULT_KEY, ShiftedMean, ShiftedModel, ShiftedObjective
from .vae import ConvVAE, Posterior, coarse_images, prior_latents, train_vae

__all__ = [
    "DEFAULT_KEY",
    "FORMS",
    "ChannelConcat",
    "ConvVAE",
    "DiffuseVAE",
    "Generated",
    "Posterior",
    "RefinerSettings",
    "ShiftedMean",
    "ShiftedModel",
    "ShiftedObjective",
    "build_refiner",
    "coarse_images",
    "label_agreement",
    "prior_latents",
    "spread_ratio",
    "train_refiner",
    "train_vae",
]
