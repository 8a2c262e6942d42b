"""Samplers for masked (absorbing) diffusion language models.

Every sampler fills the masked positions (id V) of a canvas ``x_init`` (B, L) and never touches
the others, so prefix prompts, infilling and schema scaffolds (S3) are just canvases. The
denoiser follows :class:`interpolant.text.base.Denoiser`: ``logits = denoiser(tokens, t)``.

* :func:`ancestral`: the MDLM/MD4 reverse step on a time grid. Going t -> s < t a masked token
  stays masked w.p. (1 - a_s)/(1 - a_t) and becomes v w.p. (a_s - a_t)/(1 - a_t) p(v | x_t)
  (MDLM eq. 7; seed 7 sec. 2). With ``cache=True`` a row whose tokens did not change since its
  last model call reuses the logits (MDLM ``ddpm_cache``): exact for a time-agnostic denoiser.
* :func:`first_hitting`: seed 7's first-hitting sampler (FHS, alg. 1). With n masked tokens the
  next unmasking time solves 1 - a_tau = (1 - a_t) u^(1/n); one uniformly chosen masked token is
  drawn from p(. | x). Exactly the continuous-time reverse process, one model call per token
  (``group`` > 1 unmasks several per call: parallel FHS).
* :func:`confidence_decode`: LLaDA/MaskGIT decoding. Each step predicts every masked token,
  keeps the ``n_transfer`` most confident (probability, margin or negative entropy) and remasks
  the rest ("low-confidence remasking"); ``block_length`` decodes blocks left to right
  (semi-autoregressive, LLaDA ``generate``).

Categorical draws are float64 by default (the ancestral step in two stages: unmask or not, then
the token by inverse CDF; exact). ``precision="float32"`` reproduces MDLM's
``_sample_categorical`` (Gumbel-max over the V + 1 classes with float32 uniforms), which seed 7
shows truncates rare tokens and lowers the temperature as the number of steps grows. Random
numbers come from per-sample counter-based streams (:class:`Randomness`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..paths.discrete import DiscretePath
from .base import Denoiser, check_tokens, mask_id

PRECISIONS = ("float64", "float32")
ORDERS = ("confidence", "margin", "entropy", "random")


@dataclass
class TextSample:
    """Sampled tokens (B, L), batched model calls ``nfe``, per-row model evaluations
    ``row_evals`` (B,) and the wall time of the sampler."""

    tokens: Tensor
    nfe: int
    row_evals: Tensor
    wall_s: float


# ----------------------------------------------------------------------------------------------
# Randomness: counter-based per-sample streams, so a sample does not depend on the batch.

_U64 = 1 << 64


def _int64(c: int) -> int:
    return c - _U64 if c >= 1 << 63 else c


_GOLDEN, _MIX1, _MIX2 = (
    _int64(0x9E3779B97F4A7C15),
    _int64(0xBF58476D1CE4E5B9),
    _int64(0x94D049BB133111EB),
)


def _shift_right(z: Tensor, k: int) -> Tensor:
    """Logical right shift of int64 bit patterns."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def splitmix64(z: Tensor) -> Tensor:
    """The SplitMix64 output function on int64 bit patterns (Steele et al. 2014)."""
    z = (z ^ _shift_right(z, 30)) * _MIX1
    z = (z ^ _shift_right(z, 27)) * _MIX2
    return z ^ _shift_right(z, 31)


class Randomness:
    """Uniforms for a batch of samples. By default row i owns the SplitMix64 stream of key
    ``seed + i``: the k-th draw of a row depends only on (seed + i, k), never on the batch, the
    device or which other rows are still active. Passing ``generator`` instead draws the whole
    batch from one torch generator: faster, but a sample then depends on its batch."""

    def __init__(self, batch: int, seed: int = 0, generator: torch.Generator | None = None):
        self.generator = generator
        self.keys = splitmix64((torch.arange(batch, dtype=torch.long) + int(seed)) * _GOLDEN)
        self.counter = 0

    def uniform(
        self, shape: Sequence[int], rows: Tensor | None = None, dtype: torch.dtype = torch.float64
    ) -> Tensor:
        """(n_rows, *shape) uniforms in [0, 1) for ``rows`` (a bool mask; None = all rows), on
        the float64 grid 2^-53 or the float32 grid 2^-24 (like ``torch.rand``)."""
        keys = self.keys if rows is None else self.keys[rows]
        if self.generator is not None:
            return torch.rand((keys.shape[0], *shape), generator=self.generator, dtype=dtype)
        size = 1
        for d in shape:
            size *= int(d)
        offsets = torch.arange(size, dtype=torch.long) + (self.counter << 32)
        self.counter += 1
        z = splitmix64(keys[:, None] + offsets[None] * _GOLDEN)
        if dtype == torch.float64:
            u = _shift_right(z, 11).to(torch.float64) * 2.0**-53
        else:
            u = (_shift_right(z, 40).to(torch.float64) * 2.0**-24).to(dtype)
        return u.reshape(keys.shape[0], *shape)


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def gumbel_argmax(probs: Tensor, u: Tensor) -> Tensor:
    """argmax_c p_c / E_c with E_c = -log u_c ~ Exp(1), computed in ``u``'s dtype: Gumbel-max
    in the exponential form of MDLM's ``_sample_categorical``. In float32 the uniforms lie on a
    2^-24 grid, so E_c >= 6e-8 and a class with p_c below ~6e-8 p_max can never win (seed 7)."""
    return (probs.to(u.dtype) / -torch.log(u)).argmax(-1)


def inverse_cdf(probs: Tensor, u: Tensor) -> Tensor:
    """One exact categorical draw per row of ``probs`` (..., C) from uniforms ``u`` (...) in
    float64 (inverse CDF; robust to unnormalised rows)."""
    cdf = probs.to(torch.float64).cumsum(-1)
    target = (u.to(torch.float64) * cdf[..., -1]).unsqueeze(-1)
    idx = torch.searchsorted(cdf.contiguous(), target.contiguous(), right=True).squeeze(-1)
    return idx.clamp_max(probs.shape[-1] - 1)


def denoiser_probs(denoiser: Denoiser, tokens: Tensor, t: Tensor, vocab_size: int) -> Tensor:
    """p(x^i = v | tokens) (B, L, V) in float64 from the denoiser's logits."""
    logits = denoiser(tokens, t)
    if logits.shape != (*tokens.shape, vocab_size):
        raise ValueError(
            f"denoiser must return logits of shape {(*tokens.shape, vocab_size)}, "
            f"got {tuple(logits.shape)}"
        )
    return torch.softmax(logits.to(torch.float64), dim=-1)


def _setup(
    x_init: Tensor, vocab_size: int, generator: torch.Generator | None, seed: int
) -> tuple[Tensor, Randomness]:
    check_tokens(x_init, vocab_size)
    return x_init.clone(), Randomness(x_init.shape[0], seed, generator)


def time_grid(steps: int) -> Tensor:
    """Uniform grid 1 = t_0 > t_1 > ... > t_steps = 0 (float64)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)


# ----------------------------------------------------------------------------------------------
# Ancestral sampling (MDLM / MD4) with optional caching.


def ancestral_step(
    x: Tensor,
    probs: Tensor,
    unmask_prob: Tensor,
    rng: Randomness,
    precision: str = "float64",
) -> Tensor:
    """One reverse step t -> s: every masked position draws from the V + 1 classes
    [unmask_prob * p(v | x_t) for v < V, 1 - unmask_prob for the mask] (MDLM eq. 7), with
    ``unmask_prob = (a_s - a_t) / (1 - a_t)`` per row (B,).

    float64: in two stages, Bernoulli(unmask_prob) then p(. | x_t) by inverse CDF (exact; seed 7
    sec. 4's fix). float32: one Gumbel-max draw over the V + 1 classes with float32 uniforms,
    exactly as MDLM's ``_sample_categorical`` (the truncated sampler seed 7 diagnoses)."""
    vocab = probs.shape[-1]
    masked = x == mask_id(vocab)
    delta = unmask_prob.to(torch.float64).reshape(-1, 1).expand_as(x)
    out = x.clone()
    # Only masked positions are drawn (the draws at visible ones would be discarded).
    if precision == "float64":
        u = rng.uniform((x.shape[1], 2))
        hit = masked & (u[..., 0] < delta)
        out[hit] = inverse_cdf(probs[hit], u[..., 1][hit])
    else:
        u = rng.uniform((x.shape[1], vocab + 1), dtype=torch.float32)[masked]
        d = delta[masked].unsqueeze(-1)
        classes = torch.cat([d * probs[masked], 1.0 - d], dim=-1)
        out[masked] = gumbel_argmax(classes, u)
    return out


def ancestral(
    denoiser: Denoiser,
    x_init: Tensor,
    vocab_size: int,
    steps: int,
    path: DiscretePath | None = None,
    cache: bool = False,
    precision: str = "float64",
    generator: torch.Generator | None = None,
    seed: int = 0,
) -> TextSample:
    """Ancestral sampling on a uniform grid of ``steps`` steps from t = 1 to 0 (the last step
    unmasks everything since a(0) = 1). ``cache=True`` calls the model only for rows that
    changed since their last call (no call at all when no row changed)."""
    _check_precision(precision)
    path = DiscretePath("linear") if path is None else path
    x, rng = _setup(x_init, vocab_size, generator, seed)
    batch = x.shape[0]
    grid, alpha = time_grid(steps), path.alpha(time_grid(steps)).to(torch.float64)
    row_evals = torch.zeros(batch, dtype=torch.long)
    probs = torch.zeros(*x.shape, vocab_size, dtype=torch.float64)
    stale = torch.ones(batch, dtype=torch.bool)
    nfe, start = 0, time.perf_counter()
    for j in range(steps):
        t = grid[j].expand(batch)
        need = stale if cache else torch.ones(batch, dtype=torch.bool)
        if need.any():
            probs[need] = denoiser_probs(denoiser, x[need], t[need], vocab_size)
            row_evals += need.long()
            nfe += 1
        delta = ((alpha[j + 1] - alpha[j]) / (1.0 - alpha[j])).clamp(0.0, 1.0).expand(batch)
        x_next = ancestral_step(x, probs, delta, rng, precision)
        stale = (x_next != x).any(1)
        x = x_next
    return TextSample(x, nfe, row_evals, time.perf_counter() - start)


# ----------------------------------------------------------------------------------------------
# First-hitting sampler (seed 7, alg. 1).


def first_hitting_time(path: DiscretePath, t: Tensor, n_masked: Tensor, u: Tensor) -> Tensor:
    """The time at which the first of ``n_masked`` still-masked tokens unmasks, given none did
    on (tau, t]: P(no unmask on (tau, t]) = ((1 - a_tau) / (1 - a_t))^n, so
    1 - a_tau = (1 - a_t) u^(1/n) (seed 7, eq. 9)."""
    one_minus = (1.0 - path.alpha(t).to(torch.float64)) * u ** (1.0 / n_masked.clamp_min(1))
    return path.t_of_alpha(1.0 - one_minus).to(torch.float64).clamp(0.0, 1.0)


def first_hitting(
    denoiser: Denoiser,
    x_init: Tensor,
    vocab_size: int,
    path: DiscretePath | None = None,
    group: int = 1,
    precision: str = "float64",
    generator: torch.Generator | None = None,
    seed: int = 0,
) -> TextSample:
    """First-hitting sampling: each model call unmasks ``group`` uniformly chosen masked
    positions (1 = exact FHS, L calls for L masked tokens), each drawn from p(. | x), after
    advancing the clock by ``group`` first-hitting times. ``precision="float32"`` draws the
    token by float32 Gumbel-max instead of the float64 inverse CDF."""
    _check_precision(precision)
    if group < 1:
        raise ValueError(f"group must be >= 1, got {group}")
    path = DiscretePath("linear") if path is None else path
    x, rng = _setup(x_init, vocab_size, generator, seed)
    batch, length = x.shape
    t = torch.ones(batch, dtype=torch.float64)
    row_evals = torch.zeros(batch, dtype=torch.long)
    nfe, start = 0, time.perf_counter()
    masked = x == mask_id(vocab_size)
    while masked.any():
        active = masked.any(1)
        probs = denoiser_probs(denoiser, x[active], t[active], vocab_size)
        nfe += 1
        row_evals += active.long()
        # Per active row: `group` hitting-time uniforms, L position keys, L token uniforms.
        u = rng.uniform((group + 2 * length,), active)
        n = masked[active].sum(1)
        k = n.clamp_max(group)
        t_act = t[active]
        for j in range(group):
            moved = first_hitting_time(path, t_act, n - j, u[:, j])
            t_act = torch.where(j < k, moved, t_act)
        t[active] = t_act
        # Choose k uniformly random masked positions: the k largest random keys.
        keys = torch.where(masked[active], u[:, group : group + length], -1.0)
        rank = keys.argsort(1, descending=True).argsort(1)
        chosen = masked[active] & (rank < k[:, None])
        if precision == "float64":
            draw = inverse_cdf(probs, u[:, group + length :])
        else:
            u32 = rng.uniform((length, vocab_size), active, torch.float32)
            draw = gumbel_argmax(probs, u32)
        x_act = x[active]
        x[active] = torch.where(chosen, draw, x_act)
        masked = x == mask_id(vocab_size)
    return TextSample(x, nfe, row_evals, time.perf_counter() - start)


# ----------------------------------------------------------------------------------------------
# Confidence-ordered decoding with low-confidence remasking; semi-autoregressive blocks.


def transfer_counts(n_masked: Tensor, steps: int) -> Tensor:
    """(B, steps) tokens to commit per step: n // steps each, the remainder on the first steps
    (LLaDA ``get_num_transfer_tokens``)."""
    base = n_masked[:, None] // steps
    extra = (torch.arange(steps)[None, :] < (n_masked % steps)[:, None]).long()
    return base + extra


def token_scores(probs: Tensor, draw: Tensor, order: str, u: Tensor) -> Tensor:
    """How sure the model is of ``draw`` at each position: its probability ("confidence"), the
    top-1 minus top-2 probability ("margin"), minus the entropy ("entropy"), or random."""
    if order == "confidence":
        return probs.gather(-1, draw.unsqueeze(-1)).squeeze(-1)
    if order == "margin":
        top2 = probs.topk(2, dim=-1).values
        return top2[..., 0] - top2[..., 1]
    if order == "entropy":
        return (probs * probs.clamp_min(1e-300).log()).sum(-1)
    return u


def confidence_decode(
    denoiser: Denoiser,
    x_init: Tensor,
    vocab_size: int,
    steps: int,
    order: str = "confidence",
    temperature: float = 0.0,
    block_length: int | None = None,
    precision: str = "float64",
    generator: torch.Generator | None = None,
    seed: int = 0,
) -> TextSample:
    """LLaDA ``generate``: the masked span is cut into blocks of ``block_length`` positions
    (None: one block), each decoded in ``steps // n_blocks`` steps. Each step samples a token at
    every masked position of the block (argmax at ``temperature`` 0, else Gumbel-max of
    log p / temperature), commits the ``transfer_counts`` best-scored ones and remasks the rest.
    Positions outside the masked span are fixed."""
    _check_precision(precision)
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    x, rng = _setup(x_init, vocab_size, generator, seed)
    batch, length = x.shape
    mask = mask_id(vocab_size)
    block = length if block_length is None else int(block_length)
    if block < 1:
        raise ValueError(f"block_length must be >= 1, got {block_length}")
    starts = list(range(0, length, block))
    if steps < len(starts):
        raise ValueError(f"steps ({steps}) must be >= the number of blocks ({len(starts)})")
    per_block = [steps // len(starts) + (b < steps % len(starts)) for b in range(len(starts))]
    dtype = torch.float64 if precision == "float64" else torch.float32
    row_evals = torch.zeros(batch, dtype=torch.long)
    nfe, start, done = 0, time.perf_counter(), 0
    for b, lo in enumerate(starts):
        in_block = torch.zeros(length, dtype=torch.bool)
        in_block[lo : lo + block] = True
        counts = transfer_counts(((x == mask) & in_block).sum(1), per_block[b])
        for j in range(per_block[b]):
            todo = (x == mask) & in_block
            if not todo.any():
                break
            t = torch.full((batch,), 1.0 - done / steps, dtype=torch.float64)
            probs = denoiser_probs(denoiser, x, t, vocab_size)
            nfe, done = nfe + 1, done + 1
            row_evals += 1
            u = rng.uniform((length, vocab_size + 1), dtype=dtype)
            if temperature == 0:
                draw = probs.argmax(-1)
            else:
                tempered = torch.softmax(probs.clamp_min(1e-300).log() / temperature, -1)
                draw = gumbel_argmax(tempered, u[..., :vocab_size])
            score = token_scores(probs, draw, order, u[..., vocab_size].to(torch.float64))
            score = torch.where(todo, score, -torch.inf)
            rank = score.argsort(1, descending=True).argsort(1)
            commit = todo & (rank < counts[:, j : j + 1])
            x = torch.where(commit, draw, x)
    return TextSample(x, nfe, row_evals, time.perf_counter() - start)


# ----------------------------------------------------------------------------------------------
# Canvases and the one entry point.


def masked_canvas(n: int, length: int, vocab_size: int, prefix: Tensor | None = None) -> Tensor:
    """``n`` all-masked sequences of ``length`` tokens, the first ones set to ``prefix``."""
    x = torch.full((n, length), mask_id(vocab_size), dtype=torch.long)
    if prefix is not None:
        prefix = torch.as_tensor(prefix, dtype=torch.long).reshape(-1)
        if prefix.numel() > length:
            raise ValueError(f"prefix of {prefix.numel()} tokens exceeds length {length}")
        x[:, : prefix.numel()] = prefix
    return x


SAMPLERS: dict[str, Callable[..., TextSample]] = {
    "ancestral": ancestral,
    "first_hitting": first_hitting,
    "confidence": confidence_decode,
}


def sample_text(
    denoiser: Denoiser,
    length: int,
    n: int,
    sampler: str = "first_hitting",
    steps: int = 64,
    vocab_size: int | None = None,
    canvas: Tensor | None = None,
    seed: int = 0,
    **options: object,
) -> TextSample:
    """Sample ``n`` sequences of ``length`` tokens from a masked-diffusion ``denoiser``.

    ``sampler``: "ancestral" (``steps`` grid steps; options ``cache``, ``precision``, ``path``),
    "first_hitting" (one call per token; ``group``, ``precision``, ``path``; ``steps`` unused),
    "confidence" (LLaDA decoding; ``order``, ``temperature``, ``block_length``). ``canvas``
    (length,) or (n, length) fixes given tokens (prefix/infill): only mask ids are sampled.
    ``vocab_size`` defaults to ``denoiser.vocab_size``."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {sorted(SAMPLERS)}, got {sampler!r}")
    if vocab_size is None:
        vocab_size = getattr(denoiser, "vocab_size", None)
        if vocab_size is None:
            raise ValueError("vocab_size is required when the denoiser has no .vocab_size")
    vocab = int(vocab_size)
    if canvas is None:
        x_init = masked_canvas(n, length, vocab)
    else:
        canvas = torch.as_tensor(canvas, dtype=torch.long)
        x_init = canvas.reshape(1, -1).repeat(n, 1) if canvas.ndim == 1 else canvas.clone()
        if tuple(x_init.shape) != (n, length):
            raise ValueError(f"canvas must have shape ({length},) or ({n}, {length})")
    if sampler == "first_hitting":
        return first_hitting(denoiser, x_init, vocab, seed=seed, **options)  # type: ignore[arg-type]
    fn = SAMPLERS[sampler]
    return fn(denoiser, x_init, vocab, steps=steps, seed=seed, **options)
