"""Discrete paths for token sequences, in the same convention as the Gaussian ones.

``alpha(t)`` is the probability that a token is still clean at time t: alpha(0) = 1 (data) and
alpha(1) = 0 (the source: all masked for absorbing diffusion, uniform tokens for uniform-noise
diffusion). Only the schedule differs between the families here; the corruption lives in
:meth:`DiscretePath.corrupt`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..configurable import Configurable, number, one_of, option
from ..errors import WrongTypeError
from .base import as_time

SCHEDULES = ("linear", "cosine", "log-linear")
KINDS = ("mask", "uniform")


@dataclass(frozen=True)
class DiscretePath(Configurable):
    """A token corruption process with clean-probability schedule ``alpha(t)``.

    ``kind`` is ``"mask"`` (absorbing: a corrupted token becomes the mask id, which is the
    vocabulary size) or ``"uniform"`` (a corrupted token is redrawn uniformly from the
    vocabulary, possibly equal to the clean one).

    Schedules (``schedule``):
        linear:     alpha(t) = 1 - t
        cosine:     alpha(t) = 1 - cos(pi/2 (1 - t))            (MD4)
        log-linear: alpha(t) = 1 - (1 - eps) t                   (MDLM; eps keeps t = 1 finite)
    """

    name: ClassVar[str] = "discrete"
    SCHEDULES: ClassVar[tuple[str, ...]] = SCHEDULES
    KINDS: ClassVar[tuple[str, ...]] = KINDS
    schedule: str = option(
        "log-linear", help="clean-probability schedule alpha(t)", check=one_of(*SCHEDULES)
    )
    kind: str = option("mask", help="corruption: mask (absorbing) or uniform", check=one_of(*KINDS))
    eps: float = option(
        1e-3, help="alpha(1) of the log-linear schedule", check=number(0, 1, open_hi=True)
    )

    def alpha(self, t: float | Tensor) -> Tensor:
        """Probability that a token is clean at time t."""
        t = as_time(t)
        if self.schedule == "linear":
            return 1.0 - t
        if self.schedule == "cosine":
            return 1.0 - torch.cos(0.5 * math.pi * (1.0 - t))
        return 1.0 - (1.0 - self.eps) * t

    def d_alpha(self, t: float | Tensor) -> Tensor:
        """d alpha / dt (negative: tokens only get corrupted as t grows)."""
        t = as_time(t)
        if self.schedule == "linear":
            return -torch.ones_like(t)
        if self.schedule == "cosine":
            return -0.5 * math.pi * torch.sin(0.5 * math.pi * (1.0 - t))
        return torch.full_like(t, -(1.0 - self.eps))

    def t_of_alpha(self, alpha: float | Tensor) -> Tensor:
        """The inverse schedule: the time at which the clean probability is ``alpha``."""
        a = as_time(alpha)
        if self.schedule == "linear":
            return 1.0 - a
        if self.schedule == "cosine":
            return 1.0 - torch.acos((1.0 - a).clamp(-1.0, 1.0)) * (2.0 / math.pi)
        return (1.0 - a) / (1.0 - self.eps)

    def elbo_weight(self, t: float | Tensor) -> Tensor:
        """-alpha'(t) / (1 - alpha(t)): the continuous-time ELBO weight of the cross-entropy on
        masked tokens (MDLM eq. 10, MD4 eq. 5)."""
        return -self.d_alpha(t) / (1.0 - self.alpha(t))

    def corrupt(
        self, tokens: Tensor, t: Tensor, vocab_size: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """Draw x_t ~ q(x_t | x_0) for a batch of token ids (B, L) at times t (B,)."""
        if tokens.dtype != torch.long:
            raise WrongTypeError(f"tokens must be int64 ids, got {tokens.dtype}")
        keep_p = self.alpha(t).to(torch.float64).reshape(-1, *([1] * (tokens.ndim - 1)))
        # Draw on the generator's device (a CUDA generator cannot fill a CPU tensor).
        where = generator.device if generator is not None else tokens.device
        u = torch.rand(tokens.shape, generator=generator, dtype=torch.float64, device=where)
        corrupted = u.to(keep_p.device) >= keep_p
        if self.kind == "mask":
            noise = torch.full_like(tokens, vocab_size)
        else:
            noise = torch.randint(
                0, vocab_size, tokens.shape, generator=generator, device=where
            ).to(tokens)
        return torch.where(corrupted, noise, tokens)
