"""Cyclic One-Way diffusion, COW (Wang et al., ICLR 2024, seed paper 36).

Region-preserving generation: a seed (the visual condition) fills a region of the canvas, and the
rest of the canvas must be generated in harmony with it while the seed stays as it is. On a
uniform grid of N steps with the step indices counted from the data, r = floor(0.5 N) ("replace")
and b = floor(0.7 N) ("back") (``pipeline_COW.py`` / ``run_COW.py`` of the official code):

1. DDIM-invert the seed canvas to t_b, keeping every intermediate s_k (k = 1..b); DDIM-invert
   the whole canvas (seed pasted on a constant background) to t_r: x_r.
2. Repeat ``cycles`` (10) times: *disturb*, the exact forward transition
   x_b ~ q(x_b | x_r) = N((alpha_b / alpha_r) x_r, (sigma_b^2 - (alpha_b / alpha_r)^2
   sigma_r^2) I) (``inject_noise``); *construct*, DDIM (eta = 0) from t_b down to t_r, replacing
   the seed region with s_k after every step (one-way: information flows from the seed outwards,
   never back into it).
3. Finish with DDIM (eta = 0.1) from t_r to 0, replacing the seed region once more at
   k = floor(0.4 N); ``exact_region=True`` pastes the seed into the result at the end.

The grid, N, the solver dtype and the seed come from a :class:`~interpolant.solvers.Sampler`
(:data:`COW_SAMPLER`: DDIM on N = 10 uniform steps, float64); the k-th time counted from the
data is the k-th time of the spec's grid from its end.

The text-conditioning parts of the official pipeline (prompts, the region-dependent negative
prompt for CFG) need a text-conditioned model; here the model is any unconditional
:class:`Model` (conditioning passes through ``cond``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from typing_extensions import Unpack

from ..errors import UserError
from ..predictions import Model
from ..randomness import Streams
from ..solvers import Hook, Run, Sampler, State, Step, as_sampler, sample
from ..solvers.dpm import DDIM
from ..solvers.grids import Uniform
from ..solvers.spec import SamplerOptions
from .base import Operator, Reconstruction, Rows, renoise, seeded
from .inversion import invert

#: The official sampler: DDIM (eta = 0) on N = 10 uniform steps, float64 arithmetic.
COW_SAMPLER = Sampler(DDIM(), steps=10, grid=Uniform(), solver_dtype="float64", seed=0)
#: The stream of the disturb (forward) draws.
DISTURB_STREAM = "cow-disturb"


class ReplaceRegion(Hook[None]):
    """Step hook: after a step arriving at a time of ``targets`` (time -> state), the region
    ``mask`` (1 = seed) takes that state: x <- m s_t + (1 - m) x."""

    def __init__(self, mask: Tensor, targets: dict[float, Tensor]) -> None:
        self.mask, self.targets = mask, targets

    def on_step(self, x_state: State, step: Step, run: Run, state: None) -> State:
        target = self._find(step.nxt.t)
        if target is None:
            return x_state
        m = self.mask.to(x_state.x)
        return x_state.replace(x=m * target.to(x_state.x) + (1 - m) * x_state.x)

    def _find(self, t: float) -> Tensor | None:
        for key, value in self.targets.items():
            if abs(key - t) < 1e-9:
                return value
        return None


@dataclass(frozen=True)
class COWSettings:
    """The official defaults: 10 disturb/construct cycles, r = 0.5 N, b = 0.7 N, final
    replacement at 0.4 N, final eta 0.1 (N: the sampler's steps)."""

    cycles: int = 10
    replace_level: float = 0.5
    back_level: float = 0.7
    final_replace_level: float = 0.4
    final_eta: float = 0.1


def _levels(s: COWSettings, n: int) -> tuple[int, int, int]:
    """The grid indices (from the data) r, b and the final replacement's, checked."""
    if not 0 < s.replace_level < s.back_level <= 1:
        raise UserError(
            f"need 0 < replace_level < back_level <= 1, got {s.replace_level}, {s.back_level}"
        )
    if s.cycles < 0 or n < 2:
        raise UserError(f"need cycles >= 0 and steps >= 2, got {s.cycles}, {n}")
    levels = (s.replace_level, s.back_level, s.final_replace_level)
    r, b, k_final = (math.floor(level * n) for level in levels)
    if not 1 <= r < b <= n:
        raise UserError(f"steps={n} gives replace index {r} and back index {b}; use more steps")
    return r, b, k_final


def cow_cost(n: int, settings: COWSettings | None = None) -> int:
    """Model evaluations of COW on N = ``n`` grid steps (one per DDIM step): the seed inversion
    to b, the canvas inversion to r, ``cycles`` constructions b -> r and the final r -> 0."""
    s = settings or COWSettings()
    r, b, _ = _levels(s, n)
    return (b - 1) + (r - 1) + s.cycles * (b - r) + r


def cow_steps_for_nfe(nfe: int, settings: COWSettings | None = None) -> int:
    """The most grid steps N whose COW run costs at most ``nfe`` model evaluations."""
    fits = [n for n in range(2, nfe + 2) if _fits(n, nfe, settings)]
    if not fits:
        raise UserError(f"nfe={nfe} cannot pay one COW run (its smallest grid costs more)")
    return max(fits)


def _fits(n: int, nfe: int, settings: COWSettings | None) -> bool:
    try:
        return cow_cost(n, settings) <= nfe
    except UserError:  # too few steps for the replace / back levels
        return False


def cow(
    model: Model,
    seed_image: Tensor,
    mask: Tensor,
    sampler: Sampler | None = None,
    *,
    background: float | Tensor = 0.0,
    settings: COWSettings | None = None,
    exact_region: bool = True,
    cond: dict[str, Any] | None = None,
    index: Rows | None = None,
    **shortcuts: Unpack[SamplerOptions],
) -> Reconstruction:
    """Generate around the seed region of ``seed_image`` (``mask`` = 1 there) by COW.

    ``background`` fills the rest of the starting canvas (the official code uses gray, 0 in
    [-1, 1] units). ``mask`` broadcasts against the batch (shape of one sample or of the batch).
    ``sampler`` (default :data:`COW_SAMPLER`; ``shortcuts`` change it) gives the grid of N steps,
    the deterministic solver of the inversions and constructions, the dtype and the seed (the
    disturb draws: stream ``cow-disturb``, the final pass: the sampler's stream; row r: sample
    ``index[r]``). The result's ``nfe`` counts every evaluation, inversions included.
    """
    s = settings or COWSettings()
    spec, seed = seeded(as_sampler(COW_SAMPLER if sampler is None else sampler, **shortcuts))
    if spec.solver.stochastic:
        raise UserError(f"COW inverts with its solver: it must be deterministic, got {spec.solver}")
    mask = (torch.as_tensor(mask) != 0).to(seed_image.dtype)
    if mask.shape not in (seed_image.shape, seed_image.shape[1:]):
        raise UserError(
            f"mask must have the shape of one sample {tuple(seed_image.shape[1:])} or of the "
            f"batch, got {tuple(mask.shape)}"
        )
    times = spec.times(model.path).flip(0).tolist()  # index k from the data: times[k]
    r, b, k_final = _levels(s, len(times) - 1)

    def on(grid: list[float], **changes: Any) -> Sampler:
        return spec.replace(grid=grid, nfe=None, steps=None, **changes)

    canvas = mask * seed_image + (1 - mask) * background
    # 1. DDIM inversion of the seed (every intermediate kept) and of the canvas.
    seed_inv = invert(model, canvas, on(times[b::-1]), cond=cond, trajectory=True)
    seed_states = dict(zip(times[1 : b + 1], seed_inv.trajectory))
    seed_states[0.0] = canvas.to(seed_inv.x.dtype)
    canvas_inv = invert(model, canvas, on(times[r::-1]), cond=cond)
    x_r, nfe = canvas_inv.x, seed_inv.nfe + canvas_inv.nfe
    replace = ReplaceRegion(mask, seed_states)
    disturb = Streams(seed, seed_image.shape[0] if index is None else index, DISTURB_STREAM)
    for _ in range(s.cycles):
        # 2a. Disturb: forward transition r -> b.
        x_b = renoise(model.path, x_r, times[r], times[b], disturb.normal_like(x_r))
        # 2b. Construct: from b to r, the seed region replaced after every step.
        out = sample(
            model, x_b, on(times[b : r - 1 : -1]), hooks=[replace], cond=cond, scale_noise=False
        )
        x_r, nfe = out.x, nfe + out.nfe
    # 3. Final denoising r -> 0 with DDIM(eta), one more replacement at k_final.
    final_targets = {times[k_final]: seed_states[times[k_final]]} if 0 < k_final < r else {}
    final = on(times[r::-1], solver=DDIM(eta=s.final_eta))
    hooks = [ReplaceRegion(mask, final_targets)]
    out = sample(model, x_r, final, hooks=hooks, cond=cond, index=index, scale_noise=False)
    x = out.x
    if exact_region:
        x = mask * seed_image + (1 - mask) * x
    return Reconstruction(x, nfe + out.nfe)


def cow_solve(
    model: Model, operator: Operator, y: Tensor, sampler: Sampler | None = None, **options: Any
) -> Reconstruction:
    """COW in the solver signature of :func:`interpolant.inverse.solve`.

    The seed region is where a masking operator observes (m = A^T A 1 != 0) and the seed image
    its adjoint A^T y (for :class:`~interpolant.inverse.operators.Inpaint`, y itself). ``nfe``
    means model evaluations: the grid gets the most steps N whose run costs at most nfe
    (:func:`cow_cost`: (b - 1) + (r - 1) + cycles (b - r) + r); ``steps`` sets N itself (the
    default, 10, is the paper's and costs 35 evaluations). Options
    that are :class:`COWSettings` fields (``cycles``, ``replace_level``, ...) build the
    settings; the others go to :func:`cow`.
    """
    if not operator.linear:
        raise UserError(f"COW needs a linear masking operator, got {type(operator).__name__}")
    ones = torch.ones(1, *operator.x_shape, dtype=y.dtype, device=y.device)
    mask = (operator.adjoint(operator(ones))[0] != 0).to(y.dtype)
    fields = {k: options.pop(k) for k in list(options) if k in COWSettings.__dataclass_fields__}
    settings = COWSettings(**fields)
    if options.get("nfe") is not None:
        if options.get("steps") is not None:
            raise UserError("give COW nfe= (model evaluations) or steps= (grid steps), not both")
        options["steps"] = cow_steps_for_nfe(int(options.pop("nfe")), settings)
    return cow(model, operator.adjoint(y), mask, sampler, settings=settings, **options)


__all__ = [
    "COW_SAMPLER",
    "COWSettings",
    "ReplaceRegion",
    "cow",
    "cow_cost",
    "cow_solve",
    "cow_steps_for_nfe",
    "renoise",
]
