"""Posterior samplers for y = A x + noise with an unconditional diffusion prior.

- :class:`DPS` (Chung et al. 2023, Alg. 1): a hook that differentiates ||y - A x0_hat(x_t)||
  through the network at each prediction and moves the new state by -zeta * gradient after the
  step (``zeta`` is zeta' / ||residual|| times the gradient of the squared norm / 2).
- :func:`red_diff` (Mardani et al. 2024): the variational mean mu optimised by Adam, with a
  stop-gradient denoising regulariser swept from high to low noise.
- :class:`DataConsistency`: hard (x <- x - A^+(A x - y)) or soft (weighted) projection, on the
  data prediction or on the state with a forward-noised measurement (Song et al. 2022), the
  medical-imaging recipe of the survey (Kazerouni et al. 2023).
- :func:`repaint` (Lugmayr et al. 2022): known-region replacement plus jump-back resampling.

All of them run on the one sampling loop (``solvers.loop.sample``) except RED-diff, which is an
optimiser, not an integrator; every model evaluation is counted in the ``nfe`` they report.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from typing_extensions import Unpack

from ..errors import UserError, WrongTypeError
from ..predictions import Evaluations, Model, Prediction
from ..randomness import Streams, derive_seed
from ..solvers import (
    Hook,
    Node,
    Plan,
    Run,
    Sampler,
    SampleResult,
    State,
    Step,
    as_sampler,
    make_nodes,
    sample,
)
from ..solvers.dpm import DDIM
from ..solvers.grids import Uniform
from ..solvers.spec import SamplerOptions
from .base import (
    Operator,
    Reconstruction,
    Rows,
    detached,
    model_gradient,
    renoise,
    seeded,
    start_noise,
    taped,
)
from .operators import Inpaint, least_squares

if TYPE_CHECKING:
    from ..guidance.energy import ReconstructionGuidance

#: The samplers' default: ancestral DDIM (eta = 1 is DDPM, the papers'), 100 uniform steps.
ANCESTRAL = Sampler(DDIM(eta=1.0), nfe=100, grid=Uniform(), seed=0)
#: RePaint's default: the same sampler on 50 steps.
REPAINT = ANCESTRAL.replace(nfe=None, steps=50)


def _sum_but_batch(v: Tensor) -> Tensor:
    return v.reshape(v.shape[0], -1).sum(1)


def apply_pinv(op: Operator, r: Tensor, cg_iters: int = 30) -> Tensor:
    """A^+ r: the closed form where the operator has one, else CGLS (``least_squares``)."""
    try:
        return op.pinv(r)
    except WrongTypeError:
        return least_squares(op, r, iters=cg_iters)


def _check_y(op: Operator, y: Tensor, batch: int | None = None) -> None:
    expected = op(torch.zeros(1, *op.x_shape, dtype=y.dtype, device=y.device)).shape[1:]
    if tuple(y.shape[1:]) != tuple(expected):
        raise UserError(f"y must have shape (B, *{tuple(expected)}), got {tuple(y.shape)}")
    if batch is not None and y.shape[0] != batch:
        raise UserError(f"y has batch {y.shape[0]} but the noise has batch {batch}")


def _prepare(
    operator: Operator,
    y: Tensor,
    noise: Tensor | None,
    sampler: Sampler,
    index: Rows | None,
    shortcuts: dict[str, Any],
) -> tuple[Sampler, int, Tensor]:
    """The seeded spec, its seed and the start noise (drawn from the seed unless given)."""
    spec, seed = seeded(as_sampler(sampler, **shortcuts))
    if noise is None:
        noise = start_noise(seed, (y.shape[0], *operator.x_shape), y, index)
    _check_y(operator, y, noise.shape[0])
    return spec, seed, noise


# ----------------------------------------------------------------------------------------------
# DPS.

#: DPS's likelihood terms: the paper's normalised step (noise-blind) or the Gaussian likelihood.
LIKELIHOODS = ("norm", "gaussian")


@dataclass
class DPSState:
    """Per-run state of :class:`DPS`: the newest gradient g (consumed by the step) and the
    residual norms ||y - A x0_hat|| where it was taken."""

    grad: Tensor | None = None
    residual: Tensor | None = None


class DPS(Hook[DPSState]):
    """Diffusion posterior sampling (Chung et al. 2023, Alg. 1, Gaussian noise).

    ``likelihood="norm"`` (the default; the paper's experiments and the official code): at each
    prediction the hook takes g = grad_{x_t} ||y - A(x0_hat(x_t))|| (per sample) through the
    network; after the step it applies x_{i-1} <- x'_{i-1} - zeta g. The norm (not its square)
    is what the official code differentiates: zeta g = (zeta / ||r||) grad ||r||^2 / 2, the
    paper's step size zeta_i = zeta' / ||y - A x0_hat||. This step does **not** read the
    measurement's noise level: the paper replaces its rho = 1 / sigma_y^2 (eq. 16) by
    zeta' / ||r|| (the official FFHQ configs: zeta' = 0.3 for SR x4 and blur, 0.5 for random
    inpainting, all at sigma_y = 0.05), so the same samples come out at every sigma_y.

    ``likelihood="gaussian"``: the paper's eq. 16, the Gaussian likelihood itself,
    grad log p(y | x_t) ~ -grad ||y - A x0_hat||^2 / (2 r_t^2) with r_t^2 = sigma_y^2 +
    Var[x0 | x_t] (sigma_y is ``operator.noise_std``; the second term, for data of variance
    ``data_std^2``, is PiGDM's and keeps the term bounded at high noise; ``data_std=None``
    drops it and is the paper's plug-in rho = 1 / sigma_y^2), added ``zeta`` times to the
    prediction's score, so every solver steps with it (for DDPM this is Alg. 1 with zeta_i =
    rho beta_i / sqrt(alpha_i)). For a Gaussian prior N(0, data_std^2 I) and an operator with
    orthonormal rows it is the exact posterior score. The energy is
    :meth:`~interpolant.guidance.energy.ReconstructionGuidance.residual_energy`
    (mode "gaussian"), differentiated through this run's own forward pass.

    The run's model is taped (:class:`~interpolant.inverse.base.TapedModel`), so the gradient
    reuses the sampler's own forward pass: one network call per evaluation.
    """

    def __init__(
        self,
        operator: Operator,
        y: Tensor,
        zeta: float = 1.0,
        *,
        likelihood: str = "norm",
        data_std: float | None = 1.0,
    ) -> None:
        if zeta < 0:
            raise UserError(f"zeta must be >= 0, got {zeta}")
        if likelihood not in LIKELIHOODS:
            raise UserError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        self.operator, self.y, self.zeta = operator, y, float(zeta)
        self.likelihood = likelihood
        self.energy: ReconstructionGuidance | None = None
        if likelihood == "gaussian":
            # Lazy: guidance.energy imports inverse.base.
            from ..guidance.energy import ReconstructionGuidance

            self.energy = ReconstructionGuidance(operator, y, mode="gaussian", data_std=data_std)

    def residual_norm(self, x0: Tensor) -> Tensor:
        """||y - A x0|| per sample."""
        return _sum_but_batch((self.y.to(x0) - self.operator(x0)) ** 2).sqrt()

    def prepare(self, plan: Plan) -> Plan:
        return Plan(taped(plan.model), plan.grid, plan.x)

    def start(self, run: Run) -> DPSState:
        return DPSState()

    def on_prediction(self, pred: Prediction, node: Node, run: Run, state: DPSState) -> Prediction:
        if self.energy is None:
            state.grad, state.residual = model_gradient(pred, node, run, self.residual_norm)
            return detached(pred)
        if node.alpha == 0 or node.sigma == 0:  # no likelihood term there (add_to_score's rule)
            return detached(pred)
        energy = self.energy

        def gaussian_energy(x0: Tensor) -> Tensor:
            return energy.residual_energy(x0, pred.x, node)

        grad, _ = model_gradient(pred, node, run, gaussian_energy)
        with torch.no_grad():
            state.residual = self.residual_norm(pred.x0.detach())
        from ..guidance.base import add_to_score

        return add_to_score(detached(pred), -grad, self.zeta)

    def on_step(self, x_state: State, step: Step, run: Run, state: DPSState) -> State:
        if state.grad is None:
            return x_state
        grad, state.grad = state.grad, None
        return x_state.replace(x=x_state.x - self.zeta * grad.to(x_state.x.dtype))

    def __repr__(self) -> str:
        return f"DPS({type(self.operator).__name__}, zeta={self.zeta:g}, {self.likelihood})"


def dps(
    model: Model,
    operator: Operator,
    y: Tensor,
    noise: Tensor | None = None,
    sampler: Sampler | None = None,
    *,
    zeta: float = 1.0,
    likelihood: str = "norm",
    data_std: float | None = 1.0,
    index: Rows | None = None,
    **shortcuts: Unpack[SamplerOptions],
) -> SampleResult:
    """DPS on the loop with ``sampler`` (default :data:`ANCESTRAL`; ``shortcuts`` change it);
    ``likelihood`` / ``data_std`` as in :class:`DPS` (``"gaussian"`` reads
    ``operator.noise_std``).

    ``noise`` is the start draw (B, *x_shape); by default it comes from the ``inverse-start``
    stream of the spec's seed (row r: sample ``index[r]``)."""
    base = ANCESTRAL if sampler is None else sampler
    spec, _, noise = _prepare(operator, y, noise, base, index, dict(shortcuts))
    hook = DPS(operator, y, zeta, likelihood=likelihood, data_std=data_std)
    return sample(model, noise, spec, hooks=[hook], index=index)


# ----------------------------------------------------------------------------------------------
# RED-diff.

#: Weightings of the denoising term, as functions of 1/SNR^(1/2) = sigma / alpha (Mardani et al.
#: 2024, sec. 4.3; the official code's ``denoise_term_weight``).
RED_WEIGHTINGS = {
    "linear": lambda r: r,
    "sqrt": math.sqrt,
    "square": lambda r: r * r,
    "log": lambda r: math.log1p(r),
    "trunc_linear": lambda r: min(r, 1.0),
    "power2over3": lambda r: r ** (2 / 3),
    "const": lambda r: 1.0,
}
#: RED-diff's streams: eps of every step (per sample) and the batch's random time order.
RED_NOISE_STREAM, RED_ORDER_STREAM = "red-diff-noise", "red-diff-order"


def _measured_count(op: Operator, y: Tensor) -> Tensor:
    """Entries of y that are measurements: the mask size for inpainting (whose y keeps zeros
    where unobserved), else every entry; the official code averages the data term over these."""
    if isinstance(op, Inpaint):
        return op.mask.sum().to(y)
    return torch.tensor(float(y[0].numel()), dtype=y.dtype, device=y.device)


def _red_times(steps: int, order: str, t_max: float, t_min: float, seed: int) -> Tensor:
    """RED-diff's time schedule: descending, ascending or one random order for the batch (as in
    the official code), from the ``red-diff-order`` stream of ``seed``."""
    times = torch.linspace(t_max, t_min, steps, dtype=torch.float64)
    if order == "ascending":
        return times.flip(0)
    if order == "random":
        return times[Streams(seed, 1, RED_ORDER_STREAM).permutation(steps)[0]]
    return times


def red_diff(
    model: Model,
    operator: Operator,
    y: Tensor,
    *,
    steps: int = 100,
    lr: float = 0.1,
    lam: float = 0.25,
    obs_weight: float = 1.0,
    noise_std: float | str | None = None,
    weighting: str = "linear",
    order: str = "descending",
    t_max: float = 0.999,
    t_min: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.99),
    init: Tensor | None = None,
    seed: int = 0,
    index: Rows | None = None,
) -> Reconstruction:
    """RED-diff (Mardani et al. 2024, Alg. 1; defaults of ``NVlabs/RED-diff``: lr 0.1, Adam
    betas (0.9, 0.99), lambda = 0.25, linear weighting, mu_0 = A^+ y, descending times).

    Each step draws eps (the ``red-diff-noise`` stream of ``seed``, row r: sample ``index[r]``)
    and t, forms x_t = alpha mu + sigma eps, and takes one Adam step on

        l(mu) = obs_weight * ||y - A mu||^2 / (2 m) + lam * w(t) * <sg(eps_hat(x_t) - eps), mu> / D

    whose gradient in mu is the paper's eq. 11: the data term's plus lam w(t) sg(eps_hat - eps);
    with w = sigma / alpha this is lam (mu - x0_hat(x_t)), RED with a time-annealed denoiser.
    ``m`` counts the measured entries (the mask size for inpainting), ``D`` the pixels. One
    network evaluation per step (``nfe = steps``), no backpropagation through the network.

    The measurement's noise level: the paper's loss (eq. 8) weighs the data term by
    1 / (2 sigma_v^2), ||y - A mu||^2 / (2 sigma_v^2) + lam E_t[...]; the official code (and
    so the paper's figures) uses ``mean((y - A mu)^2) / 2`` whatever the noise, i.e. sigma_v^2
    = m / D in the units above, and that is the default (``noise_std=None``). ``noise_std=``
    a number sigma_v > 0, or ``"operator"`` (``operator.noise_std``), gives the paper's
    weight instead: the data term becomes obs_weight * ||y - A mu||^2 / (2 sigma_v^2 D), so
    at large sigma_v the regulariser pulls mu to the prior's denoised mean and at small
    sigma_v the residual shrinks with it. Adam is invariant to the loss's overall scale, so
    only this ratio to ``lam`` matters.
    """
    if weighting not in RED_WEIGHTINGS:
        raise UserError(f"weighting must be one of {sorted(RED_WEIGHTINGS)}, got {weighting!r}")
    if order not in ("descending", "ascending", "random"):
        raise UserError(f"order must be descending, ascending or random, got {order!r}")
    if steps < 1:
        raise UserError(f"steps must be >= 1, got {steps}")
    if not 0.0 < t_min < t_max <= 1.0:
        raise UserError(f"need 0 < t_min < t_max <= 1, got t_min={t_min}, t_max={t_max}")
    _check_y(operator, y)
    sigma_v = operator.noise_std if noise_std == "operator" else noise_std
    if isinstance(sigma_v, str) or (sigma_v is not None and not sigma_v > 0):
        raise UserError(
            f"noise_std must be a number > 0, 'operator' (with operator.noise_std > 0) or None "
            f"(the official code's weight), got {noise_std!r} (operator.noise_std = "
            f"{operator.noise_std})"
        )
    noise = Streams(seed, y.shape[0] if index is None else index, RED_NOISE_STREAM)
    nodes = make_nodes(model.path, _red_times(steps, order, t_max, t_min, seed))
    mu0 = apply_pinv(operator, y) if init is None else init
    mu = mu0.detach().clone().requires_grad_(True)
    d_count = float(mu[0].numel())
    # The data term's denominator: 2 m (the official mean) or 2 sigma_v^2 D (the paper's eq. 8).
    m_count = _measured_count(operator, y) if sigma_v is None else sigma_v**2 * d_count
    weight, counter = RED_WEIGHTINGS[weighting], Evaluations()
    first, second = torch.zeros_like(mu), torch.zeros_like(mu)  # Adam's moment estimates
    for k, node in enumerate(nodes, start=1):
        eps = noise.normal_like(mu)
        x_t = (node.alpha * mu + node.sigma * eps).detach()
        with torch.no_grad():
            eps_hat = model.at(x_t, node, counter).eps
        # Eq. 11: the regulariser's gradient is lam w(t) sg(eps_hat - eps), linear in mu.
        w_t = lam * weight(node.sigma / node.alpha)
        loss_noise = _sum_but_batch((eps_hat - eps).detach() * mu) / d_count
        loss_obs = _sum_but_batch((y - operator(mu)) ** 2) / (2 * m_count)
        (grad,) = torch.autograd.grad((w_t * loss_noise + obs_weight * loss_obs).sum(), mu)
        # Adam step (Kingma & Ba 2015, Alg. 1; torch.optim.Adam's arithmetic, eps = 1e-8).
        first = betas[0] * first + (1 - betas[0]) * grad
        second = betas[1] * second + (1 - betas[1]) * grad**2
        step = lr / (1 - betas[0] ** k)
        denom = (second / (1 - betas[1] ** k)).sqrt() + 1e-8
        mu = (mu.detach() - step * first / denom).requires_grad_(True)
    return Reconstruction(mu.detach(), counter.nfe)


# ----------------------------------------------------------------------------------------------
# Data consistency (hard / soft) and the medical-imaging recipe.

WHERE = ("state", "x0")


class DataConsistency(Hook[None]):
    """Projection onto the measurements, on the state after every step (``where='state'``) or
    on every data prediction (``where='x0'``).

    ``mode='pinv'``: x <- x - weight * A^+(A x - y_t) (weight 1 is the hard projection onto
    {A x = y_t}; weight in (0, 1) the soft one of Song et al. 2022, eq. 9). ``mode='gradient'``:
    x <- x + weight * A^T(y_t - A x) (soft, needs only the adjoint). For masks the hard
    projection is x <- m y + (1 - m) x; for MRI F^H[(1 - M) F x + M y], the survey's recipe.

    On the data prediction y_t = y; on a state at time t, y_t = alpha_t y + sigma_t A z with
    fresh z from the run's streams when ``noise_measurement`` (Song et al. 2022, eq. 8), else
    alpha_t y. Operators without a closed-form pinv (CT) use ``cg_iters`` of CGLS.
    """

    def __init__(
        self,
        operator: Operator,
        y: Tensor,
        weight: float = 1.0,
        mode: str = "pinv",
        *,
        where: str = "state",
        noise_measurement: bool = True,
        cg_iters: int = 30,
    ) -> None:
        if mode not in ("pinv", "gradient"):
            raise UserError(f"mode must be 'pinv' or 'gradient', got {mode!r}")
        if where not in WHERE:
            raise UserError(f"where must be 'state' or 'x0', got {where!r}")
        if not weight > 0:
            raise UserError(f"weight must be > 0, got {weight}")
        self.operator, self.y, self.weight, self.mode = operator, y, float(weight), mode
        self.where, self.noise_measurement, self.cg_iters = where, noise_measurement, int(cg_iters)

    def project(self, x: Tensor, y: Tensor) -> Tensor:
        """One (hard or soft) projection of x onto {A x = y}."""
        resid = self.operator(x) - y.to(x.dtype)
        if self.mode == "gradient":
            return x - self.weight * self.operator.adjoint(resid)
        return x - self.weight * apply_pinv(self.operator, resid, self.cg_iters)

    def on_prediction(self, pred: Prediction, node: Node, run: Run, state: None) -> Prediction:
        if self.where != "x0":
            return pred
        return pred.replace("x0", self.project(pred.x0, self.y))

    def on_step(self, x_state: State, step: Step, run: Run, state: None) -> State:
        if self.where != "state":
            return x_state
        node = step.nxt
        # Song et al. 2022, eq. 8: the measurement forward-noised to the state's time.
        y_t = node.alpha * self.y.to(x_state.x.dtype)
        if self.noise_measurement and node.sigma > 0:
            y_t = y_t + node.sigma * self.operator(run.noise(x_state.x))
        return x_state.replace(x=self.project(x_state.x, y_t))

    def __repr__(self) -> str:
        return f"DataConsistency({self.mode}, weight={self.weight:g}, where={self.where!r})"


def data_consistency_sample(
    model: Model,
    operator: Operator,
    y: Tensor,
    noise: Tensor | None = None,
    sampler: Sampler | None = None,
    *,
    weight: float = 1.0,
    where: str = "state",
    mode: str = "pinv",
    cg_iters: int = 30,
    index: Rows | None = None,
    **shortcuts: Unpack[SamplerOptions],
) -> SampleResult:
    """The survey's recipe (Kazerouni et al. 2023, sec. 3.2; Chung & Ye 2022; Song et al. 2022):
    an unconditional prior sampled with ``sampler`` (default :data:`ANCESTRAL`) and a
    data-consistency projection after every step (``where='state'``) or on every data
    prediction (``where='x0'``). With a hard projection, zero noise and a first-order solver
    whose last step returns x0_hat, the sample satisfies A x = y. ``noise`` as in :func:`dps`."""
    base = ANCESTRAL if sampler is None else sampler
    spec, _, noise = _prepare(operator, y, noise, base, index, dict(shortcuts))
    dc = DataConsistency(operator, y, weight, mode, where=where, cg_iters=cg_iters)
    return sample(model, noise, spec, hooks=[dc], index=index)


# ----------------------------------------------------------------------------------------------
# RePaint.

#: The stream of RePaint's re-noising draws.
REPAINT_STREAM = "repaint-renoise"


def repaint_schedule(steps: int, jump_length: int = 10, resamples: int = 10) -> list[int]:
    """The indices into a descending grid of ``steps + 1`` times that RePaint visits (Lugmayr et
    al. 2022, Alg. 1 and the official ``get_schedule_jump``): down one step at a time; at every
    multiple of ``jump_length`` (except the last) go back up ``jump_length`` steps, ``resamples
    - 1`` times. Consecutive indices differ by +1 (denoise) or -1 (re-noise)."""
    if steps < 1 or jump_length < 1 or resamples < 1:
        raise UserError("steps, jump_length and resamples must all be >= 1")
    # Count in "remaining steps" r = steps - index, as the official code counts t.
    jumps = {r: resamples - 1 for r in range(0, steps - jump_length, jump_length)}
    r, visited = steps, [0]
    while r >= 1:
        r -= 1
        visited.append(steps - r)
        if jumps.get(r, 0) > 0:
            jumps[r] -= 1
            for _ in range(jump_length):
                r += 1
                visited.append(steps - r)
    return visited


def _descents(visited: Sequence[int]) -> list[tuple[list[int], int | None]]:
    """The schedule as (descending run of grid indices, the index it re-noises up to next)."""
    out: list[tuple[list[int], int | None]] = []
    segment = [visited[0]]
    for k in visited[1:]:
        if k == segment[-1] + 1:
            segment.append(k)
        else:
            out.append((segment, k))
            segment = [k]
    out.append((segment, None))
    return out


def repaint_cost(steps: int, jump_length: int = 10, resamples: int = 10, per_step: int = 1) -> int:
    """Model evaluations of RePaint on ``steps`` grid steps: every down move of
    :func:`repaint_schedule` costs the solver's ``per_step`` evaluations."""
    visited = repaint_schedule(steps, jump_length, resamples)
    return per_step * sum(b > a for a, b in itertools.pairwise(visited))


def repaint_steps_for_nfe(
    nfe: int, jump_length: int = 10, resamples: int = 10, per_step: int = 1
) -> int:
    """The most grid steps whose RePaint schedule costs at most ``nfe`` model evaluations."""
    if repaint_cost(1, jump_length, resamples, per_step) > nfe:
        raise UserError(f"nfe={nfe} is below one RePaint step ({per_step} evaluations)")
    steps = 1
    while repaint_cost(steps + 1, jump_length, resamples, per_step) <= nfe:
        steps += 1
    return steps


def repaint(
    model: Model,
    operator: Operator,
    y: Tensor,
    noise: Tensor | None = None,
    sampler: Sampler | None = None,
    *,
    jump_length: int = 10,
    resamples: int = 10,
    index: Rows | None = None,
    **shortcuts: Unpack[SamplerOptions],
) -> Reconstruction:
    """RePaint (Lugmayr et al. 2022): steps of ``sampler`` (default :data:`REPAINT`, ancestral)
    whose known region is replaced by the forward-noised measurement (x <- m (alpha y + sigma z)
    + (1 - m) x, the hard state projection of :class:`DataConsistency`), with jump-back
    resampling x_{t+} ~ q(x_{t+} | x_t) (:func:`~interpolant.inverse.base.renoise`, draws from
    the ``repaint-renoise`` stream) along :func:`repaint_schedule` on the spec's grid. Works
    for any operator with a pseudo-inverse; for masks it is RePaint exactly. Each down move
    costs the solver's evaluations (one for DDIM).

    ``nfe=`` means model evaluations, as everywhere: the grid gets the most steps whose schedule
    fits (:func:`repaint_steps_for_nfe`; the result's ``nfe`` is what was spent, <= nfe).
    ``steps=`` sets the grid steps directly; the default, 50 steps with jumps of 10 and 10
    resamples, costs :func:`repaint_cost` (50, 10, 10) = 410 evaluations."""
    base = REPAINT if sampler is None else sampler
    options: dict[str, Any] = dict(shortcuts)
    budget = options.pop("nfe", None)
    if budget is not None:
        if "steps" in options:
            raise UserError(
                "give RePaint nfe= (model evaluations) or steps= (grid steps), not both"
            )
        per_step = as_sampler(base, **options).solver.nfe_for_steps(1)
        options["steps"] = repaint_steps_for_nfe(int(budget), jump_length, resamples, per_step)
    spec, seed, noise = _prepare(operator, y, noise, base, index, options)
    times = spec.times(model.path)
    nodes = make_nodes(model.path, times)
    visited = repaint_schedule(len(nodes) - 1, jump_length, resamples)
    dc = DataConsistency(operator, y)
    renoise_streams = Streams(seed, noise.shape[0] if index is None else index, REPAINT_STREAM)
    x, nfe = noise * nodes[0].sigma, 0
    for n, (segment, up) in enumerate(_descents(visited)):
        if len(segment) > 1:
            # Denoise along the descending segment on the one loop (its own derived seed).
            part = spec.replace(
                grid=times[segment], nfe=None, steps=None, seed=derive_seed("repaint", seed, n)
            )
            out = sample(model, x, part, hooks=[dc], index=index, scale_noise=False)
            x, nfe = out.x, nfe + out.nfe
        if up is not None:
            # Re-noise up one step: q(x_{t+} | x_t) on the path.
            t_now, t_up = nodes[segment[-1]].t, nodes[up].t
            x = renoise(model.path, x, t_now, t_up, renoise_streams.normal_like(x))
    return Reconstruction(x, nfe)


# ----------------------------------------------------------------------------------------------
# One entry point.

#: Names accepted by :func:`solve`.
METHODS = (
    "dps",
    "red_diff",
    "dc",
    "repaint",
    "pinv",
    "flowchef",
    "cow",
    "mbir",
    "tds",
    "tds_prior",
    "mcgdiff",
    "fps",
    "dpnp",
)


def solve(
    model: Model,
    operator: Operator,
    y: Tensor,
    method: str = "dps",
    sampler: Sampler | None = None,
    *,
    index: Rows | None = None,
    **options: Any,
) -> Reconstruction:
    """Reconstruct x from measurements ``y`` (B, *y_shape) with ``method``:

    ``dps`` (:func:`dps`), ``red_diff`` (:func:`red_diff`), ``dc`` (the data-consistency recipe,
    :func:`data_consistency_sample`), ``repaint`` (:func:`repaint`), ``flowchef``
    (:func:`~interpolant.inverse.flowchef.flowchef`), ``cow``
    (:func:`~interpolant.inverse.cow.cow_solve`), ``mbir``
    (:func:`~interpolant.inverse.mbir.diffusion_mbir`, volumes), ``tds`` / ``tds_prior`` /
    ``mcgdiff`` / ``fps`` (:func:`~interpolant.inverse.smc.smc_posterior`, one posterior draw per
    measurement; ``particles=``; ``nfe`` of the result is per draw), ``dpnp``
    (:func:`~interpolant.inverse.dpnp.dpnp`, split Gibbs; ``iterations=``, ``denoise_steps=``)
    or ``pinv`` (A^+ y, the zero-filled / least-squares baseline, no NFE). ``nfe=`` is model
    evaluations for every method (RePaint and COW fit their grids to it). ``options`` go to
    that function: its own (zeta=, weight=, where=, jump_length=, lr=, lam=, steps= for
    red_diff, ...) and, for the samplers, the spec's shortcuts (nfe=, steps=, seed=, solver=,
    grid=, ...). The samplers' start noise comes from the ``inverse-start`` stream of the
    spec's seed.
    """
    name = method.lower().replace("-", "_")
    if name not in METHODS:
        raise UserError(f"unknown method {method!r}; choose one of {METHODS}")
    _check_y(operator, y)
    if name == "pinv":
        return Reconstruction(apply_pinv(operator, y, int(options.get("cg_iters", 30))), 0)
    if name == "red_diff":
        if sampler is not None:
            raise UserError("red_diff is an optimiser: it takes no sampler (use steps=, seed=)")
        return red_diff(model, operator, y, index=index, **options)
    if name == "repaint":
        return repaint(model, operator, y, None, sampler, index=index, **options)
    if name == "flowchef":
        from .flowchef import flowchef

        return flowchef(model, operator, y, sampler, index=index, **options)
    if name == "cow":
        from .cow import cow_solve

        return cow_solve(model, operator, y, sampler, index=index, **options)
    if name in ("tds", "tds_prior", "mcgdiff", "fps"):
        from .smc import smc_posterior

        if index is not None:
            raise UserError(f"{name} draws its own particles: it takes no index=")
        out = smc_posterior(model, operator, y, sampler, method=name, **options)
        return Reconstruction(out.x, out.nfe)
    if name == "dpnp":
        from .dpnp import dpnp as dpnp_sample

        if sampler is not None:
            raise UserError("dpnp runs its own prior chains: it takes no sampler")
        return dpnp_sample(model, operator, y, index=index, **options)
    if name == "mbir":
        from .mbir import diffusion_mbir

        if index is not None:
            raise UserError("mbir draws per slice: it takes no index=")
        return diffusion_mbir(model, operator, y, sampler, **options)
    run = dps if name == "dps" else data_consistency_sample
    result = run(model, operator, y, None, sampler, index=index, **options)
    return Reconstruction(result.x, result.nfe)


__all__ = [
    "ANCESTRAL",
    "DPS",
    "METHODS",
    "RED_WEIGHTINGS",
    "REPAINT",
    "DPSState",
    "DataConsistency",
    "apply_pinv",
    "data_consistency_sample",
    "dps",
    "red_diff",
    "repaint",
    "repaint_schedule",
    "solve",
]
