"""Conventions every text module shares.

Tokens are int64 ids in [0, V) for a vocabulary of V clean tokens; the mask token of absorbing
diffusion is id ``V`` (so a masked-diffusion network embeds V + 1 ids). A denoiser maps a
partially masked sequence to logits over the V clean tokens at every position::

    logits = denoiser(tokens, t)        # tokens (B, L) int64 in [0, V]; t (B,) float; -> (B, L, V)

Masked diffusion is time-agnostic (seed 7): the exact denoiser depends on the visible tokens
only, so ``t`` may be ignored. The SUBS parameterisation (MDLM) is the sampler's business: a
visible token stays as it is, so the logits at visible positions are never used.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from ..errors import UserError, WrongTypeError


class Denoiser(Protocol):
    """``denoiser(tokens (B, L) int64, t (B,)) -> logits (B, L, V)`` over clean tokens."""

    def __call__(self, tokens: Tensor, t: Tensor) -> Tensor: ...


def mask_id(vocab_size: int) -> int:
    """The id of the mask token for a vocabulary of ``vocab_size`` clean tokens."""
    return int(vocab_size)


def check_tokens(tokens: Tensor, vocab_size: int, allow_mask: bool = True) -> None:
    """Raise a ValueError naming the problem if ``tokens`` is not a (B, L) int64 batch of ids."""
    if tokens.dtype != torch.long:
        raise WrongTypeError(f"tokens must be int64 ids, got dtype {tokens.dtype}")
    if tokens.ndim != 2:
        raise UserError(f"tokens must have shape (batch, length), got {tuple(tokens.shape)}")
    top = vocab_size if allow_mask else vocab_size - 1
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) > top):
        bad = tokens[(tokens < 0) | (tokens > top)][:5].tolist()
        raise UserError(f"token ids must lie in [0, {top}] (vocabulary {vocab_size}); got {bad}")
