"""EDLM (seed 19, Xu et al. 2025): energy-based correction of parallel masked-diffusion steps.

A masked diffusion model denoises all masked tokens independently, p_theta(x0 | x_t) =
prod_i p_theta(x0^i | x_t), which is wrong when several dependent tokens unmask in one step.
EDLM corrects the joint with a residual energy (eq. 5):

    p_{theta,phi}(x0 | x_t) ∝ p_theta(x0 | x_t) exp(-E(x0, x_t, t)),

and samples it by importance sampling in the steps t of a window [is_end, is_start] (alg. 1,
"parallel importance sampling"): draw K proposals x0^(j) ~ p_theta(. | x_t) (visible tokens
carried over), weight w_j ∝ exp(-E_j / tau), resample one and take the posterior step
q(x_s | x_t, x0^(j)): each masked token becomes x0^i with prob (a_s - a_t) / (1 - a_t).
Outside the window the step is MDLM's. :class:`EDLM` is a method of the one text loop
(:func:`interpolant.text.loop.sample_text`) on the ancestral sampler's grid::

    sample_text(denoiser, canvas, method=EDLM(AREnergy(ar.log_prob), n_proposals=8), steps=4)

``nfe`` counts the denoiser's calls; the energy's own evaluations are not included.

EDLM-AR (training-free, sec. 3.2): E(x0, x_t) = -log p_AR(x0) + log p_theta(x0 | x_t), so the
corrected joint is p_AR restricted to sequences that agree with x_t, and w_j ∝ p_AR / p_theta
is the ordinary importance weight. The weights are exp(-E) as in the paper; the official code
uses exp(+E) (MinkaiXu/Energy-Diffusion-LLM issue #3): ``sign=-1`` reproduces that flip as an
ablation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor

from ..configurable import boolean, number, option
from ..errors import UserError
from ..randomness import Streams, inverse_cdf
from .base import mask_id
from .loop import Method, Query, SamplingRun, TextSampler
from .samplers import GridState


class Energy(Protocol):
    """``energy(x0 (N, L), x_t (N, L), proposal_logp (N,)) -> E (N,)``: lower is likelier."""

    def __call__(self, x0: Tensor, x_t: Tensor, proposal_logp: Tensor) -> Tensor: ...


class AREnergy:
    """EDLM-AR: E = -log p_AR(x0) + log p_theta(x0 | x_t) from a sequence log-likelihood
    ``log_prob(x0 (N, L)) -> (N,)`` (an autoregressive model or an exact language)."""

    def __init__(self, log_prob: Callable[[Tensor], Tensor]) -> None:
        self.log_prob = log_prob

    def __call__(self, x0: Tensor, x_t: Tensor, proposal_logp: Tensor) -> Tensor:
        return -self.log_prob(x0).to(torch.float64) + proposal_logp.to(torch.float64)


def importance_weights(energy: Tensor, temperature: float = 1.0, sign: float = 1.0) -> Tensor:
    """Self-normalised weights w_j ∝ exp(-sign E_j / temperature) over the last axis (K);
    rows whose energies are all +inf get uniform weights."""
    logw = -sign * energy.to(torch.float64) / temperature
    all_bad = torch.isneginf(logw).all(-1, keepdim=True)
    return torch.where(all_bad, torch.ones_like(logw), logw).softmax(-1)


def draw_proposals(
    x_t: Tensor, probs: Tensor, n_proposals: int, streams: Streams, fill: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """K full sequences per row, masked positions drawn independently from ``probs`` (B, L, V)
    and visible ones carried over: (B, K, L) and their log p_theta(x0 | x_t) (B, K).
    ``fill`` (B, L) bool: draw only these masked positions (the others stay masked, and the
    log-probability sums over the drawn ones): partially decoded proposals."""
    batch, length, vocab = probs.shape
    u = streams.uniform((n_proposals, length)).to(probs.device)
    expanded = probs[:, None].expand(batch, n_proposals, length, vocab)
    draws = inverse_cdf(expanded, u)
    drawn = x_t == mask_id(vocab)
    if fill is not None:
        drawn = drawn & fill
    masked = drawn[:, None].expand_as(draws)
    x0 = torch.where(masked, draws, x_t[:, None].expand_as(draws))
    token_logp = expanded.gather(-1, draws.unsqueeze(-1)).squeeze(-1).clamp_min(1e-300).log()
    return x0, (token_logp * masked).sum(-1)


def _is_energy(value: Any) -> str | None:
    return None if callable(value) else "a callable energy(x0, x_t, proposal_logp) -> (N,)"


def _is_window(value: Any) -> str | None:
    want = "(is_end, is_start) with 0 <= is_end <= is_start <= 1"
    if not isinstance(value, Sequence) or len(value) != 2:
        return want
    lo, hi = value
    ok = all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    return None if ok and 0.0 <= lo <= hi <= 1.0 else want


@dataclass(frozen=True)
class EDLM(Method[GridState]):
    """EDLM sampling on the uniform grid of the spec's ``steps``: importance sampling with
    ``n_proposals`` proposals in the steps whose start time t lies in ``window`` = (is_end,
    is_start) (the paper's defaults 0.4..0.6; its scripts use is_start = 1), weights
    exp(-sign E / temperature), MDLM steps elsewhere. ``n_proposals = 1`` is MDLM exactly.
    Proposals are drawn in float64 (the spec's precision must be float64)."""

    name: ClassVar[str] = "edlm"
    stream: ClassVar[str] = "text-edlm"
    energy: Energy = option(help="the residual energy E(x0, x_t, proposal_logp)", check=_is_energy)
    n_proposals: int = option(4, help="proposals K per step", check=number(1, integer=True))
    window: tuple[float, float] = option(
        (0.0, 1.0), help="(is_end, is_start): the steps with importance sampling", check=_is_window
    )
    temperature: float = option(1.0, help="of the weights", check=number(0, open_lo=True))
    sign: float = option(1.0, help="+1 the paper's exp(-E); -1 the official code's exp(+E)",
                         check=number())  # fmt: skip
    partial: bool = option(
        False,
        help="weigh partially decoded proposals: only the step's newly unmasked tokens are "
        "drawn and the energy scores x_s (masked tokens left in; the energy must accept them)",
        check=boolean,
    )

    def __post_init__(self) -> None:
        if isinstance(self.window, Sequence) and len(self.window) == 2:
            object.__setattr__(self, "window", (float(self.window[0]), float(self.window[1])))
        super().__post_init__()

    def check(self, spec: TextSampler) -> None:
        if spec.precision != "float64":
            raise UserError("EDLM draws its proposals in float64: use precision='float64'")

    def start(self, run: SamplingRun) -> GridState:
        return GridState.of(run)

    def query(self, run: SamplingRun, state: GridState) -> Query | None:
        return state.query(run)

    def update(self, run: SamplingRun, state: GridState, query: Query, probs: Tensor) -> Tensor:
        x, batch, length = run.x, run.batch, run.length
        in_window = self.window[0] <= float(state.times[state.index]) <= self.window[1]
        k = self.n_proposals if in_window else 1
        if k > 1 and self.partial:
            return self._partial_step(run, state, probs)
        x0, logq = draw_proposals(x, probs, k, run.streams)
        if k > 1:
            # Parallel importance sampling (alg. 1): resample one proposal by exp(-E).
            x_rep = x[:, None].expand(batch, k, length).reshape(-1, length)
            e = self.energy(x0.reshape(-1, length), x_rep, logq.reshape(-1)).reshape(batch, k)
            w = importance_weights(e, self.temperature, self.sign)
            pick = inverse_cdf(w, run.streams.uniform(()))
            x0 = x0[torch.arange(batch), pick]
        else:
            x0 = x0[:, 0]
        # Posterior step q(x_s | x_t, x0): unmask each masked token w.p. (a_s - a_t)/(1 - a_t).
        delta = state.unmask_probability()
        state.index += 1
        unmask = run.masked & (run.streams.uniform((length,)) < delta)
        return torch.where(unmask, x0, x)

    def _partial_step(self, run: SamplingRun, state: GridState, probs: Tensor) -> Tensor:
        """Importance sampling of the step's newly unmasked tokens only: the set U is drawn
        first (each masked token w.p. (a_s - a_t) / (1 - a_t)), the K proposals fill U from the
        factorised p_theta, and E is evaluated on the candidates x_s (the rest still masked).
        With E = -log P(visible tokens of x_s) + log p_theta(x_s^U | x_t) (``AREnergy`` of an
        exact language's ``log_marginal``), w_j ∝ P(x_s^(j)) / p_theta(x_s^(j),U | x_t): the
        importance weights of the step's exact joint p(x_s^U | visible of x_t), so K -> inf
        samples every step, and the whole trajectory, exactly. A full proposal x0 instead
        draws all masked tokens, and on a long sparse chain early on every one of them is
        impossible (all weights fall back to uniform; docs/papers/19-edlm.md)."""
        x, batch, length = run.x, run.batch, run.length
        delta = state.unmask_probability()
        state.index += 1
        unmask = run.masked & (run.streams.uniform((length,)) < delta)
        x_s, logq = draw_proposals(x, probs, self.n_proposals, run.streams, fill=unmask)
        k = self.n_proposals
        x_rep = x[:, None].expand(batch, k, length).reshape(-1, length)
        e = self.energy(x_s.reshape(-1, length), x_rep, logq.reshape(-1)).reshape(batch, k)
        w = importance_weights(e, self.temperature, self.sign)
        pick = inverse_cdf(w, run.streams.uniform(()))
        return x_s[torch.arange(batch), pick]


__all__ = ["EDLM", "AREnergy", "Energy", "draw_proposals", "importance_weights"]
