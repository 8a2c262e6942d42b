"""The samplers of masked (absorbing) diffusion language models, as methods of the one loop
(:func:`interpolant.text.loop.sample_text`).

* :class:`Ancestral`: the MDLM/MD4 reverse step on a uniform time grid. Going t -> s < t a
  masked token stays masked w.p. (1 - a_s)/(1 - a_t) and becomes v w.p. (a_s - a_t)/(1 - a_t)
  p(v | x_t) (MDLM eq. 7; seed 7 sec. 2). With the spec's ``cache=True`` a row whose tokens did
  not change since its last evaluation reuses it (MDLM ``ddpm_cache``).
* :class:`FirstHitting`: seed 7's first-hitting sampler (FHS, alg. 1). With n masked tokens the
  next unmasking time solves 1 - a_tau = (1 - a_t) u^(1/n) (eq. 9); one uniformly chosen masked
  token is drawn from p(. | x). Exactly the continuous-time reverse process, one model call per
  token (``group`` > 1 unmasks several per call: parallel FHS).
* :class:`Confidence`: LLaDA/MaskGIT decoding. Each step predicts every masked token, keeps the
  most confident ones (probability, margin or negative entropy) and remasks the rest
  ("low-confidence remasking"); ``block_length`` decodes blocks left to right
  (semi-autoregressive, LLaDA ``generate``).

Categorical draws are float64 by default (the ancestral step in two stages: unmask or not, then
the token by inverse CDF; exact). The spec's ``precision="float32"`` reproduces MDLM's
``_sample_categorical`` (Gumbel-max over the V + 1 classes with float32 uniforms,
``Streams.uniform(..., dtype=torch.float32)``), which seed 7 shows truncates rare tokens and
lowers the temperature as the number of steps grows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..configurable import number, one_of, option, optional
from ..errors import UserError
from ..paths.discrete import DiscretePath
from ..randomness import Streams, inverse_cdf
from .base import mask_id
from .loop import METHODS, Method, Query, SamplingRun, TextSampler

ORDERS = ("confidence", "margin", "entropy", "random")


def gumbel_argmax(probs: Tensor, u: Tensor) -> Tensor:
    """argmax_c p_c / E_c with E_c = -log u_c ~ Exp(1), computed in ``u``'s dtype: Gumbel-max
    in the exponential form of MDLM's ``_sample_categorical``. In float32 the uniforms lie on a
    2^-24 grid, so E_c >= 6e-8 and a class with p_c below ~6e-8 p_max can never win (seed 7)."""
    return (probs.to(u.dtype) / -torch.log(u)).argmax(-1)


def time_grid(steps: int) -> Tensor:
    """Uniform grid 1 = t_0 > t_1 > ... > t_steps = 0 (float64)."""
    if steps < 1:
        raise UserError(f"steps must be >= 1, got {steps}")
    return torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)


# ----------------------------------------------------------------------------------------------
# Ancestral sampling (MDLM / MD4); EDLM (text.edlm) runs on the same grid.


@dataclass
class GridState:
    """A uniform grid's times and clean probabilities a(t) (float64) and the next step."""

    times: Tensor
    alpha: Tensor
    index: int = 0

    @classmethod
    def of(cls, run: SamplingRun) -> GridState:
        steps = run.spec.steps
        if steps is None:
            raise UserError(f"the {run.spec.method.name} sampler needs steps=")
        times = time_grid(steps)
        return cls(times, run.path.alpha(times).to(torch.float64))

    def query(self, run: SamplingRun) -> Query | None:
        """Every row at the step's start time; None after the last step."""
        if self.index == len(self.times) - 1:
            return None
        return Query(self.times[self.index].expand(run.batch))

    def unmask_probability(self) -> Tensor:
        """(a_s - a_t) / (1 - a_t) for the step t -> s (MDLM eq. 7), clamped to [0, 1]."""
        a_t, a_s = self.alpha[self.index], self.alpha[self.index + 1]
        return ((a_s - a_t) / (1.0 - a_t)).clamp(0.0, 1.0)


def ancestral_step(
    x: Tensor, probs: Tensor, unmask_prob: Tensor, streams: Streams, precision: str = "float64"
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
        u = streams.uniform((x.shape[1], 2))
        hit = masked & (u[..., 0] < delta)
        out[hit] = inverse_cdf(probs[hit], u[..., 1][hit])
    else:
        u = streams.uniform((x.shape[1], vocab + 1), dtype=torch.float32)[masked]
        d = delta[masked].unsqueeze(-1)
        classes = torch.cat([d * probs[masked], 1.0 - d], dim=-1)
        out[masked] = gumbel_argmax(classes, u)
    return out


@METHODS.register
@dataclass(frozen=True)
class Ancestral(Method[GridState]):
    """Ancestral sampling on a uniform grid of ``steps`` steps from t = 1 to 0 (the last step
    unmasks everything since a(0) = 1)."""

    name: ClassVar[str] = "ancestral"
    stream: ClassVar[str] = "text-ancestral"

    def start(self, run: SamplingRun) -> GridState:
        return GridState.of(run)

    def query(self, run: SamplingRun, state: GridState) -> Query | None:
        return state.query(run)

    def update(self, run: SamplingRun, state: GridState, query: Query, probs: Tensor) -> Tensor:
        delta = state.unmask_probability().expand(run.batch)
        state.index += 1
        return ancestral_step(run.x, probs, delta, run.streams, run.spec.precision)


# ----------------------------------------------------------------------------------------------
# First-hitting sampler (seed 7, alg. 1).


def first_hitting_time(path: DiscretePath, t: Tensor, n_masked: Tensor, u: Tensor) -> Tensor:
    """The time at which the first of ``n_masked`` still-masked tokens unmasks, given none did
    on (tau, t]: P(no unmask on (tau, t]) = ((1 - a_tau) / (1 - a_t))^n, so
    1 - a_tau = (1 - a_t) u^(1/n) (seed 7, eq. 9)."""
    one_minus = (1.0 - path.alpha(t).to(torch.float64)) * u ** (1.0 / n_masked.clamp_min(1))
    return path.t_of_alpha(1.0 - one_minus).to(torch.float64).clamp(0.0, 1.0)


@dataclass
class Clock:
    """Each row's time (B,) float64: where its last first-hitting time left it."""

    t: Tensor


@METHODS.register
@dataclass(frozen=True)
class FirstHitting(Method[Clock]):
    """First-hitting sampling: each call unmasks ``group`` uniformly chosen masked positions of
    every row that has any (1 = exact FHS: L calls for L masked tokens), each drawn from
    p(. | x), after advancing the row's clock by ``group`` first-hitting times."""

    name: ClassVar[str] = "first_hitting"
    stream: ClassVar[str] = "text-first-hitting"
    uses_steps: ClassVar[bool] = False
    group: int = option(
        1, help="tokens unmasked per call (1: exact)", check=number(1, integer=True)
    )

    def check(self, spec: TextSampler) -> None:
        if spec.cache:
            raise UserError(
                "cache=True saves no calls with first_hitting (every call unmasks a token of "
                "each row it evaluates); the cache is for the ancestral and confidence samplers"
            )

    def start(self, run: SamplingRun) -> Clock:
        return Clock(torch.ones(run.batch, dtype=torch.float64))

    def query(self, run: SamplingRun, state: Clock) -> Query | None:
        active = run.masked.any(1)
        return Query(state.t, active) if bool(active.any()) else None

    def update(self, run: SamplingRun, state: Clock, query: Query, probs: Tensor) -> Tensor:
        active, group, length = run.masked.any(1), self.group, run.length  # query()'s rows
        masked = run.masked[active]
        # Per active row: `group` hitting-time uniforms, L position keys, L token uniforms.
        u = run.streams.uniform((group + 2 * length,), active)
        n = masked.sum(1)
        k = n.clamp_max(group)
        t = state.t[active]
        for j in range(group):
            t = torch.where(j < k, first_hitting_time(run.path, t, n - j, u[:, j]), t)
        state.t[active] = t
        # Choose k uniformly random masked positions: the k largest random keys.
        keys = torch.where(masked, u[:, group : group + length], -1.0)
        chosen = masked & (keys.argsort(1, descending=True).argsort(1) < k[:, None])
        if run.spec.precision == "float64":
            draw = inverse_cdf(probs, u[:, group + length :])
        else:
            u32 = run.streams.uniform((length, run.vocab_size), active, torch.float32)
            draw = gumbel_argmax(probs, u32)
        x = run.x.clone()
        x[active] = torch.where(chosen, draw, x[active])
        return x


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


@dataclass
class Blocks:
    """The blocks (start, stop, steps), the current block, its step, its commit counts (B,
    steps) and the positions inside it, and the steps taken so far."""

    spans: list[tuple[int, int, int]]
    inside: Tensor
    counts: Tensor
    block: int = 0
    step: int = 0
    done: int = 0


@METHODS.register
@dataclass(frozen=True)
class Confidence(Method[Blocks]):
    """LLaDA ``generate``: the canvas is cut into blocks of ``block_length`` positions (None: one
    block), each decoded in ``steps // n_blocks`` steps. Each step samples a token at every
    masked position of the block (argmax at ``temperature`` 0, else Gumbel-max of
    log p / temperature), commits the ``transfer_counts`` best-scored ones (``order``) and
    remasks the rest."""

    name: ClassVar[str] = "confidence"
    stream: ClassVar[str] = "text-confidence"
    order: str = option("confidence", help="commit order", check=one_of(*ORDERS))
    temperature: float = option(
        0.0, help="0: greedy, else Gumbel-max of log p / temperature", check=number(0)
    )
    block_length: int | None = option(
        None, help="semi-autoregressive blocks (None: one)", check=optional(number(1, integer=True))
    )

    def start(self, run: SamplingRun) -> Blocks:
        steps = run.spec.steps or 0
        size = run.length if self.block_length is None else self.block_length
        starts = list(range(0, run.length, size))
        if steps < len(starts):
            raise UserError(f"steps ({steps}) must be >= the number of blocks ({len(starts)})")
        per = [steps // len(starts) + (b < steps % len(starts)) for b in range(len(starts))]
        spans = [(lo, min(lo + size, run.length), n) for lo, n in zip(starts, per, strict=True)]
        state = Blocks(spans, torch.zeros(run.length, dtype=torch.bool), torch.zeros(0))
        self._enter(run, state)
        return state

    def _enter(self, run: SamplingRun, state: Blocks) -> None:
        """Set up the current block: its positions and how many tokens each step commits."""
        lo, hi, steps = state.spans[state.block]
        state.inside = torch.zeros(run.length, dtype=torch.bool)
        state.inside[lo:hi] = True
        state.counts = transfer_counts((run.masked & state.inside).sum(1), steps)
        state.step = 0

    def query(self, run: SamplingRun, state: Blocks) -> Query | None:
        # A block ends after its steps, or early when nothing in it is masked any more.
        while state.step == state.spans[state.block][2] or not (run.masked & state.inside).any():
            state.block += 1
            if state.block == len(state.spans):
                return None
            self._enter(run, state)
        t = 1.0 - state.done / (run.spec.steps or 1)
        return Query(torch.full((run.batch,), t, dtype=torch.float64))

    def update(self, run: SamplingRun, state: Blocks, query: Query, probs: Tensor) -> Tensor:
        vocab, todo = run.vocab_size, run.masked & state.inside
        dtype = torch.float64 if run.spec.precision == "float64" else torch.float32
        u = run.streams.uniform((run.length, vocab + 1), dtype=dtype)
        if self.temperature == 0:
            draw = probs.argmax(-1)
        else:
            tempered = torch.softmax(probs.clamp_min(1e-300).log() / self.temperature, -1)
            draw = gumbel_argmax(tempered, u[..., :vocab])
        score = token_scores(probs, draw, self.order, u[..., vocab].to(torch.float64))
        score = torch.where(todo, score, -torch.inf)
        rank = score.argsort(1, descending=True).argsort(1)
        commit = todo & (rank < state.counts[:, state.step : state.step + 1])
        state.step, state.done = state.step + 1, state.done + 1
        return torch.where(commit, draw, run.x)


__all__ = [
    "ORDERS",
    "Ancestral",
    "Blocks",
    "Clock",
    "Confidence",
    "FirstHitting",
    "GridState",
    "ancestral_step",
    "first_hitting_time",
    "gumbel_argmax",
    "time_grid",
    "token_scores",
    "transfer_counts",
]
