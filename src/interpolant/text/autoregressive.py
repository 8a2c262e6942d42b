"""Left-to-right sampling from a causal text model (the autoregressive baseline, EDLM's energy).

``sample_autoregressive(model, n, length)`` draws x_i ~ p(x_i | x_<i)^(1/T) (normalised) for
i = 1..L, one batched model call per position (L calls; the causal mask makes the logits at i
independent of the tokens after i, so the not-yet-drawn positions may hold anything). Draws are
float64 inverse-CDF samples from :class:`interpolant.randomness.Streams` (stream
"text-autoregressive"), so sample i depends on neither the batch size nor its position in it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import UserError
from ..randomness import Streams, fresh_seed, inverse_cdf
from .loop import progress_bar

STREAM = "text-autoregressive"


@dataclass
class ARSample:
    """Sampled tokens (B, L), batched model calls ``nfe``, calls per row ``row_evals`` (B,),
    wall time, the seed and the temperature."""

    tokens: Tensor
    nfe: int
    row_evals: Tensor
    wall_s: float
    seed: int
    temperature: float


@torch.no_grad()
def sample_autoregressive(
    model: nn.Module,
    n: int,
    length: int,
    *,
    prefix: Tensor | None = None,
    temperature: float = 1.0,
    seed: int | None = None,
    progress: bool | None = False,
) -> ARSample:
    """``n`` sequences of ``length`` tokens from a causal model whose ``forward(tokens)`` gives
    the next-token logits (B, L, V) (:class:`~interpolant.text.models.CausalTransformer`); the
    first tokens are ``prefix`` (kept, no call spent on them)."""
    vocab = getattr(model, "vocab_size", None)
    if vocab is None or not getattr(model, "causal", False):
        raise UserError("sample_autoregressive needs a causal text model (CausalTransformer)")
    if not temperature > 0:
        raise UserError(f"temperature must be > 0, got {temperature!r}")
    device = next(model.parameters()).device
    x = torch.zeros(n, length, dtype=torch.long, device=device)
    start_at = 0
    if prefix is not None:
        prefix = torch.as_tensor(prefix, dtype=torch.long).reshape(-1)
        if prefix.numel() > length:
            raise UserError(f"prefix of {prefix.numel()} tokens exceeds length {length}")
        x[:, : prefix.numel()] = prefix.to(device)
        start_at = prefix.numel()
    seed = fresh_seed() if seed is None else int(seed)
    streams = Streams(seed, n, stream=STREAM)
    bar = progress_bar(length - start_at, "sampling (autoregressive)", progress)
    began = time.perf_counter()
    for i in range(start_at, length):
        logits = model(x)[:, i].to(torch.float64) / temperature
        u = streams.uniform(()).to(device)
        x[:, i] = inverse_cdf(torch.softmax(logits, -1), u)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    calls = length - start_at
    return ARSample(
        x.cpu(), calls, torch.full((n,), calls), time.perf_counter() - began, seed, temperature
    )
