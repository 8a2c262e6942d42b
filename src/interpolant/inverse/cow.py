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

The text-conditioning parts of the official pipeline (prompts, the region-dependent negative
prompt for CFG) need a text-conditioned model; here the model is any unconditional
:class:`Model` (conditioning passes through ``cond``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..paths import GaussianPath
from ..predictions import Model
from ..solvers import Node, State, node_at, sample
from .._porting import SampleContext, make_generators, randn_like
from ..solvers.loop import SampleResult
from .base import Operator
from .inversion import invert


def renoise(path: GaussianPath, x: Tensor, t_from: float, t_to: float, noise: Tensor) -> Tensor:
    """A draw of q(x_{t_to} | x_{t_from}) for t_to >= t_from: the exact forward transition
    x' = (alpha' / alpha) x + sqrt(sigma'^2 - (alpha' / alpha)^2 sigma^2) z (``noise`` = z)."""
    if t_to < t_from:
        raise ValueError(f"renoise goes up in noise: need t_to >= t_from, got {t_to} < {t_from}")
    now, nxt = node_at(path, t_from), node_at(path, t_to)
    scale = nxt.alpha / now.alpha
    return scale * x + math.sqrt(max(nxt.sigma**2 - (scale * now.sigma) ** 2, 0.0)) * noise


class ReplaceRegion:
    """Step hook: after a step arriving at a node of ``targets`` (time -> state), the region
    ``mask`` (1 = seed) takes that state: x <- m s_t + (1 - m) x."""

    def __init__(self, mask: Tensor, targets: dict[float, Tensor]) -> None:
        self.mask, self.targets = mask, targets

    def __call__(self, state: State, node: Node, ctx: SampleContext) -> State:
        target = self._find(node.t)
        if target is None:
            return state
        m = self.mask.to(state.x)
        return state.replace(x=m * target.to(state.x) + (1 - m) * state.x)

    def _find(self, t: float) -> Tensor | None:
        for key, value in self.targets.items():
            if abs(key - t) < 1e-9:
                return value
        return None


@dataclass(frozen=True)
class COWSettings:
    """The official defaults: N = 10 steps, 10 cycles, r = 0.5 N, b = 0.7 N, final replacement
    at 0.4 N, final eta 0.1."""

    steps: int = 10
    cycles: int = 10
    replace_level: float = 0.5
    back_level: float = 0.7
    final_replace_level: float = 0.4
    final_eta: float = 0.1


def cow(
    model: Model,
    seed_image: Tensor,
    mask: Tensor,
    *,
    background: float | Tensor = 0.0,
    settings: COWSettings | None = None,
    seed: int | Sequence[int] = 0,
    exact_region: bool = True,
    solver_dtype: torch.dtype | None = torch.float64,
    cond: dict[str, Any] | None = None,
    return_result: bool = False,
) -> Tensor | SampleResult:
    """Generate around the seed region of ``seed_image`` (``mask`` = 1 there) by COW.

    ``background`` fills the rest of the starting canvas (the official code uses gray, 0 in
    [-1, 1] units). ``mask`` broadcasts against the batch (shape of one sample or of the batch).
    With ``return_result`` the :class:`SampleResult` reports the NFE spent (inversions included).
    """
    s = settings or COWSettings()
    if not 0 < s.replace_level < s.back_level <= 1:
        raise ValueError(
            f"need 0 < replace_level < back_level <= 1, got {s.replace_level}, {s.back_level}"
        )
    if s.cycles < 0 or s.steps < 2:
        raise ValueError(f"need cycles >= 0 and steps >= 2, got {s.cycles}, {s.steps}")
    mask = (torch.as_tensor(mask) != 0).to(seed_image.dtype)
    if mask.shape not in (seed_image.shape, seed_image.shape[1:]):
        raise ValueError(
            f"mask must have the shape of one sample {tuple(seed_image.shape[1:])} or of the "
            f"batch, got {tuple(mask.shape)}"
        )
    n = s.steps
    r, b, k_final = (
        math.floor(level * n) for level in (s.replace_level, s.back_level, s.final_replace_level)
    )
    if not 1 <= r < b <= n:
        raise ValueError(f"steps={n} gives replace index {r} and back index {b}; use more steps")
    times = [k / n for k in range(n + 1)]  # uniform grid, index k = time k / n
    canvas = mask * seed_image + (1 - mask) * background
    opts: dict[str, Any] = {"solver_dtype": solver_dtype, "cond": cond}
    # 1. DDIM inversion of the seed (every intermediate kept) and of the canvas.
    seed_inv = invert(model, canvas, grid=times[b::-1], keep_trajectory=True, **opts)
    assert isinstance(seed_inv, SampleResult) and seed_inv.trajectory is not None
    seed_states = {times[k]: x for k, x in zip(range(1, b + 1), seed_inv.trajectory)}
    seed_states[0.0] = canvas.to(seed_inv.x.dtype)
    canvas_inv = invert(model, canvas, grid=times[r::-1], return_result=True, **opts)
    assert isinstance(canvas_inv, SampleResult)
    x_r, nfe = canvas_inv.x, seed_inv.nfe + canvas_inv.nfe
    replace = ReplaceRegion(mask, seed_states)
    generators = make_generators(seed, seed_image.shape[0])
    for _ in range(s.cycles):
        # 2a. Disturb: forward transition r -> b.
        x_b = renoise(model.path, x_r, times[r], times[b], randn_like(x_r, generators))
        # 2b. Construct: DDIM from b to r, the seed region replaced after every step.
        result = sample(
            model,
            x_b,
            solver="ddim",
            grid=times[b : r - 1 : -1],
            step_hooks=[replace],
            scale_noise=False,
            return_result=True,
            **opts,
        )
        assert isinstance(result, SampleResult)
        x_r, nfe = result.x, nfe + result.nfe
    # 3. Final denoising r -> 0 with DDIM(eta), one more replacement at k_final.
    final_targets = {times[k_final]: seed_states[times[k_final]]} if 0 < k_final < r else {}
    result = sample(
        model,
        x_r,
        solver="ddim",
        solver_options={"eta": s.final_eta},
        grid=times[r::-1],
        step_hooks=[ReplaceRegion(mask, final_targets)],
        scale_noise=False,
        seed=[g.initial_seed() + 10**6 for g in generators],
        return_result=True,
        **opts,
    )
    assert isinstance(result, SampleResult)
    x = result.x
    if exact_region:
        x = mask * seed_image + (1 - mask) * x
    out = SampleResult(x, torch.tensor(times[::-1], dtype=torch.float64), nfe + result.nfe)
    return out if return_result else out.x


def cow_solve(
    model: Model,
    operator: Operator,
    y: Tensor,
    *,
    nfe: int | None = None,
    seed: int = 0,
    **options: Any,
) -> Tensor:
    """COW in the solver signature of :func:`interpolant.inverse.solve`.

    The seed region is where a masking operator observes (m = A^T A 1 != 0) and the seed image
    its adjoint A^T y (for :class:`~interpolant.inverse.operators.Inpaint`, y itself). ``nfe``
    sets the number of grid steps N (the default, 10, is the paper's); the NFE actually spent is
    about (cycles + 1) (b - r) + b + 2 r model calls. Other options go to :func:`cow`
    (``cycles``, ``replace_level``, ``back_level`` as :class:`COWSettings` fields too).
    """
    if not operator.linear:
        raise ValueError(f"COW needs a linear masking operator, got {type(operator).__name__}")
    ones = torch.ones(1, *operator.x_shape, dtype=y.dtype, device=y.device)
    mask = (operator.adjoint(operator(ones))[0] != 0).to(y.dtype)
    fields = {k: options.pop(k) for k in list(options) if k in COWSettings.__dataclass_fields__}
    if nfe is not None:
        fields["steps"] = int(nfe)
    out = cow(
        model, operator.adjoint(y), mask, settings=COWSettings(**fields), seed=seed, **options
    )
    assert isinstance(out, Tensor)
    return out
