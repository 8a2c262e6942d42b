"""Posterior samplers for y = A x + noise with an unconditional diffusion prior.

- :class:`DPS` (Chung et al. 2023, Alg. 1): a prediction hook that differentiates
  ||y - A x0_hat(x_t)|| through the network, and a step hook that moves the new state by
  -zeta * gradient (``zeta`` is zeta' / ||residual|| times the gradient of the squared norm / 2).
- :func:`red_diff` (Mardani et al. 2024): the variational mean mu optimised by Adam, with a
  stop-gradient denoising regulariser swept from high to low noise.
- :class:`DataConsistency`: hard (x <- x - A^+(A x - y)) or soft (weighted) projection, on the
  data prediction (a prediction hook) or on the state with a forward-noised measurement (a step
  hook; Song et al. 2022), the medical-imaging recipe of the survey (Kazerouni et al. 2023).
- :func:`repaint` (Lugmayr et al. 2022): known-region replacement plus jump-back resampling.

All of them run on the one sampling loop (``solvers.loop.sample``) except RED-diff, which is an
optimiser, not an integrator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..predictions import Model, Prediction
from ..solvers.base import Node, State, make_nodes
from ..solvers.loop import sample
from .._porting import SampleContext, make_generators, randn_like
from .base import Operator
from .operators import Inpaint, least_squares


def _sum_but_batch(v: Tensor) -> Tensor:
    return v.reshape(v.shape[0], -1).sum(1)


def apply_pinv(op: Operator, r: Tensor, cg_iters: int = 30) -> Tensor:
    """A^+ r: the closed form where the operator has one, else CGLS (``least_squares``)."""
    try:
        return op.pinv(r)
    except TypeError:
        return least_squares(op, r, iters=cg_iters)


def _check_y(op: Operator, y: Tensor, batch: int | None = None) -> None:
    expected = op(torch.zeros(1, *op.x_shape, dtype=y.dtype, device=y.device)).shape[1:]
    if tuple(y.shape[1:]) != tuple(expected):
        raise ValueError(f"y must have shape (B, *{tuple(expected)}), got {tuple(y.shape)}")
    if batch is not None and y.shape[0] != batch:
        raise ValueError(f"y has batch {y.shape[0]} but the noise has batch {batch}")


# ----------------------------------------------------------------------------------------------
# DPS.


class _Taped:
    """Calls ``net`` on a fresh leaf that requires grad, so that a prediction hook can
    differentiate the prediction with respect to the state (``leaf`` holds the last input)."""

    def __init__(self, net: Any) -> None:
        self.net = net
        self.leaf: Tensor | None = None

    def __call__(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        with torch.enable_grad():
            self.leaf = x.detach().requires_grad_(True)
            return self.net(self.leaf, t, **cond)


class DPS:
    """Diffusion posterior sampling (Chung et al. 2023, Alg. 1, Gaussian noise).

    ``prediction_hook`` computes g = grad_{x_t} ||y - A(x0_hat(x_t))|| (per sample) through the
    network; ``step_hook`` applies x_{i-1} <- x'_{i-1} - zeta g after the solver step. The norm
    (not its square) is what the official code differentiates: zeta g = (zeta / ||r||) grad ||r||^2
    / 2, the paper's step size zeta_i = zeta' / ||y - A x0_hat||. With a model from
    :func:`dps_model` the gradient reuses the sampler's forward pass; otherwise the hook
    evaluates the network once more with gradients.
    """

    def __init__(self, operator: Operator, y: Tensor, zeta: float = 1.0) -> None:
        if zeta < 0:
            raise ValueError(f"zeta must be >= 0, got {zeta}")
        self.operator, self.y, self.zeta = operator, y, float(zeta)

    def prediction_hook(self, pred: Prediction, node: Node, ctx: SampleContext) -> Prediction:
        net = ctx.model.net
        leaf = net.leaf if isinstance(net, _Taped) else None
        with torch.enable_grad():
            if leaf is None or pred.value.grad_fn is None:
                leaf = pred.x.detach().requires_grad_(True)
                t = torch.full((leaf.shape[0],), node.t, dtype=leaf.dtype, device=leaf.device)
                value = ctx.model.net(leaf, t, **ctx.cond).to(pred.x.dtype)
            else:
                value = pred.value
            taped = Prediction(leaf.to(pred.x.dtype), pred.t, pred.kind, value, pred.coeffs)
            resid = self.y.to(pred.x.dtype) - self.operator(taped.x0)
            norm = _sum_but_batch(resid**2).sqrt()
            (grad,) = torch.autograd.grad(norm.sum(), leaf)
        ctx.extra["dps_grad"] = grad.detach().to(pred.x.dtype)
        ctx.extra["dps_residual"] = norm.detach()
        return Prediction(pred.x, pred.t, pred.kind, pred.value.detach(), pred.coeffs)

    def step_hook(self, state: State, node: Node, ctx: SampleContext) -> State:
        grad = ctx.extra.pop("dps_grad", None)
        if grad is None:
            return state
        return state.replace(x=state.x - self.zeta * grad.to(state.x.dtype))


def dps_model(model: Model) -> Model:
    """``model`` with its network taped, so :class:`DPS` needs no second forward pass."""
    return Model(_Taped(model.net), model.path, model.predicts)


def dps(
    model: Model,
    operator: Operator,
    y: Tensor,
    noise: Tensor,
    *,
    nfe: int = 100,
    zeta: float = 1.0,
    solver: str = "ddim",
    solver_options: dict[str, Any] | None = None,
    grid: str = "uniform",
    seed: int | Sequence[int] = 0,
    solver_dtype: torch.dtype | None = None,
) -> Tensor:
    """DPS with the ancestral sampler (DDIM with eta = 1 is DDPM, the paper's) by default."""
    _check_y(operator, y, noise.shape[0])
    hook = DPS(operator, y, zeta)
    options = {"eta": 1.0} if solver == "ddim" and solver_options is None else solver_options
    out = sample(
        dps_model(model),
        noise,
        solver=solver,
        solver_options=options,
        nfe=nfe,
        grid=grid,
        hooks=[hook.prediction_hook],
        step_hooks=[hook.step_hook],
        seed=seed,
        solver_dtype=solver_dtype,
    )
    assert isinstance(out, Tensor)
    return out.detach()


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


def _measured_count(op: Operator, y: Tensor) -> Tensor:
    """Entries of y that are measurements: the mask size for inpainting (whose y keeps zeros
    where unobserved), else every entry; the official code averages the data term over these."""
    if isinstance(op, Inpaint):
        return op.mask.sum().to(y)
    return torch.tensor(float(y[0].numel()), dtype=y.dtype, device=y.device)


def red_diff(
    model: Model,
    operator: Operator,
    y: Tensor,
    *,
    steps: int = 100,
    lr: float = 0.1,
    lam: float = 0.25,
    obs_weight: float = 1.0,
    weighting: str = "linear",
    order: str = "descending",
    t_max: float = 0.999,
    t_min: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.99),
    init: Tensor | None = None,
    seed: int | Sequence[int] = 0,
) -> Tensor:
    """RED-diff (Mardani et al. 2024, Alg. 1; defaults of ``NVlabs/RED-diff``: lr 0.1, Adam
    betas (0.9, 0.99), lambda = 0.25, linear weighting, mu_0 = A^+ y, descending times).

    Each step draws eps and t, forms x_t = alpha mu + sigma eps, and takes one Adam step on

        l(mu) = obs_weight * ||y - A mu||^2 / (2 m) + lam * w(t) * <sg(eps_hat(x_t) - eps), mu> / D

    whose gradient in mu is the paper's eq. 11: the data term's plus lam w(t) sg(eps_hat - eps);
    with w = sigma / alpha this is lam (mu - x0_hat(x_t)), RED with a time-annealed denoiser.
    ``m`` counts the measured entries (the mask size for inpainting), ``D`` the pixels. One
    network evaluation per step, no backpropagation through the network.
    """
    if weighting not in RED_WEIGHTINGS:
        raise ValueError(f"weighting must be one of {sorted(RED_WEIGHTINGS)}, got {weighting!r}")
    if order not in ("descending", "ascending", "random"):
        raise ValueError(f"order must be descending, ascending or random, got {order!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not 0.0 < t_min < t_max <= 1.0:
        raise ValueError(f"need 0 < t_min < t_max <= 1, got t_min={t_min}, t_max={t_max}")
    _check_y(operator, y)
    gens = make_generators(seed, y.shape[0])
    times = torch.linspace(t_max, t_min, steps, dtype=torch.float64)
    if order == "ascending":
        times = times.flip(0)
    elif order == "random":  # one order for the whole batch, as in the official code
        order_seed = seed if isinstance(seed, int) else int(seed[0])
        times = times[
            torch.randperm(steps, generator=torch.Generator().manual_seed(order_seed + 7919))
        ]
    mu0 = apply_pinv(operator, y) if init is None else init
    mu = mu0.detach().clone().requires_grad_(True)
    m_count, d_count = _measured_count(operator, y), float(mu[0].numel())
    weight = RED_WEIGHTINGS[weighting]
    alphas, sigmas = (c.tolist() for c in model.path.coefficients(times)[:2])
    first, second = torch.zeros_like(mu), torch.zeros_like(mu)  # Adam's moment estimates
    for k, (t, alpha, sigma) in enumerate(zip(times.tolist(), alphas, sigmas), start=1):
        eps = randn_like(mu, gens)
        x_t = (alpha * mu + sigma * eps).detach()
        with torch.no_grad():
            eps_hat = model(x_t, t).eps
        # Eq. 11: the regulariser's gradient is lam w(t) sg(eps_hat - eps), linear in mu.
        w_t = lam * weight(sigma / alpha)
        loss_noise = _sum_but_batch((eps_hat - eps).detach() * mu) / d_count
        loss_obs = _sum_but_batch((y - operator(mu)) ** 2) / (2 * m_count)
        (grad,) = torch.autograd.grad((w_t * loss_noise + obs_weight * loss_obs).sum(), mu)
        # Adam step (Kingma & Ba 2015, Alg. 1; torch.optim.Adam's arithmetic, eps = 1e-8).
        first = betas[0] * first + (1 - betas[0]) * grad
        second = betas[1] * second + (1 - betas[1]) * grad**2
        step = lr / (1 - betas[0] ** k)
        denom = (second / (1 - betas[1] ** k)).sqrt() + 1e-8
        mu = (mu.detach() - step * first / denom).requires_grad_(True)
    return mu.detach()


# ----------------------------------------------------------------------------------------------
# Data consistency (hard / soft) and the medical-imaging recipe.


class DataConsistency:
    """Projection onto the measurements, as a prediction hook (on x0_hat) or a step hook (on
    the state).

    ``mode='pinv'``: x <- x - weight * A^+(A x - y_t) (weight 1 is the hard projection onto
    {A x = y_t}; weight in (0, 1) the soft one of Song et al. 2022, eq. 9). ``mode='gradient'``:
    x <- x + weight * A^T(y_t - A x) (soft, needs only the adjoint). For masks the hard
    projection is x <- m y + (1 - m) x; for MRI F^H[(1 - M) F x + M y], the survey's recipe.

    On the data prediction y_t = y; on a state at time t (``step_hook``), y_t = alpha_t y +
    sigma_t A z with fresh z when ``noise_measurement`` (Song et al. 2022, eq. 8), else alpha_t y.
    Operators without a closed-form pinv (CT) use ``cg_iters`` of CGLS.
    """

    def __init__(
        self,
        operator: Operator,
        y: Tensor,
        weight: float = 1.0,
        mode: str = "pinv",
        noise_measurement: bool = True,
        cg_iters: int = 30,
    ) -> None:
        if mode not in ("pinv", "gradient"):
            raise ValueError(f"mode must be 'pinv' or 'gradient', got {mode!r}")
        if not weight > 0:
            raise ValueError(f"weight must be > 0, got {weight}")
        self.operator, self.y, self.weight, self.mode = operator, y, float(weight), mode
        self.noise_measurement, self.cg_iters = noise_measurement, int(cg_iters)

    def project(self, x: Tensor, y: Tensor) -> Tensor:
        """One (hard or soft) projection of x onto {A x = y}."""
        resid = self.operator(x) - y.to(x.dtype)
        if self.mode == "gradient":
            return x - self.weight * self.operator.adjoint(resid)
        return x - self.weight * apply_pinv(self.operator, resid, self.cg_iters)

    def prediction_hook(self, pred: Prediction, node: Node, ctx: SampleContext) -> Prediction:
        return pred.replace("x0", self.project(pred.x0, self.y))

    def step_hook(self, state: State, node: Node, ctx: SampleContext) -> State:
        y_t = node.alpha * self.y.to(state.x.dtype)
        if self.noise_measurement and node.sigma > 0:
            y_t = y_t + node.sigma * self.operator(ctx.noise(state.x))
        return state.replace(x=self.project(state.x, y_t))


def data_consistency_sample(
    model: Model,
    operator: Operator,
    y: Tensor,
    noise: Tensor,
    *,
    nfe: int = 100,
    weight: float = 1.0,
    where: str = "state",
    mode: str = "pinv",
    solver: str = "ddim",
    solver_options: dict[str, Any] | None = None,
    grid: str = "uniform",
    seed: int | Sequence[int] = 0,
    cg_iters: int = 30,
) -> Tensor:
    """The survey's recipe (Kazerouni et al. 2023, sec. 3.2; Chung & Ye 2022; Song et al. 2022):
    an unconditional prior sampled with the ancestral sampler (DDIM, eta = 1) and a data-
    consistency projection after every step (``where='state'``) or on every data prediction
    (``where='x0'``). With a hard projection, zero noise and a first-order solver whose last step
    returns x0_hat, the sample satisfies A x = y."""
    if where not in ("state", "x0"):
        raise ValueError(f"where must be 'state' or 'x0', got {where!r}")
    _check_y(operator, y, noise.shape[0])
    dc = DataConsistency(operator, y, weight, mode, cg_iters=cg_iters)
    options = {"eta": 1.0} if solver == "ddim" and solver_options is None else solver_options
    hooks = [dc.prediction_hook] if where == "x0" else []
    step_hooks = [dc.step_hook] if where == "state" else []
    out = sample(
        model,
        noise,
        solver=solver,
        solver_options=options,
        nfe=nfe,
        grid=grid,
        hooks=hooks,
        step_hooks=step_hooks,
        seed=seed,
    )
    assert isinstance(out, Tensor)
    return out


# ----------------------------------------------------------------------------------------------
# RePaint.


def repaint_schedule(steps: int, jump_length: int = 10, resamples: int = 10) -> list[int]:
    """The indices into a descending grid of ``steps + 1`` times that RePaint visits (Lugmayr et
    al. 2022, Alg. 1 and the official ``get_schedule_jump``): down one step at a time; at every
    multiple of ``jump_length`` (except the last) go back up ``jump_length`` steps, ``resamples
    - 1`` times. Consecutive indices differ by +1 (denoise) or -1 (re-noise)."""
    if steps < 1 or jump_length < 1 or resamples < 1:
        raise ValueError("steps, jump_length and resamples must all be >= 1")
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


def repaint(
    model: Model,
    operator: Operator,
    y: Tensor,
    noise: Tensor,
    *,
    steps: int = 50,
    jump_length: int = 10,
    resamples: int = 10,
    grid: str = "uniform",
    seed: int = 0,
) -> Tensor:
    """RePaint (Lugmayr et al. 2022): ancestral steps whose known region is replaced by the
    forward-noised measurement (x <- m (alpha y + sigma z) + (1 - m) x, the hard state
    projection of :class:`DataConsistency`), with jump-back resampling
    x_{t+} = (alpha_{t+} / alpha_t) x_t + sqrt(sigma_{t+}^2 - (alpha_{t+} sigma_t / alpha_t)^2) z.
    Works for any operator with a pseudo-inverse; for masks it is RePaint exactly. Each down move
    of :func:`repaint_schedule` costs one network evaluation."""
    _check_y(operator, y, noise.shape[0])
    times = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64) if grid == "uniform" else None
    if times is None:
        from ..solvers.grids import get_grid

        times = get_grid(grid, model.path, steps)
    nodes = make_nodes(model.path, times)
    visited = repaint_schedule(steps, jump_length, resamples)
    dc = DataConsistency(operator, y, 1.0, "pinv")
    gens = make_generators(seed + 7919, noise.shape[0])  # re-noising draws
    x = noise * nodes[0].sigma
    segment, n_segment = [visited[0]], 0
    for k in [*visited[1:], None]:
        if k is not None and k == segment[-1] + 1:
            segment.append(k)
            continue
        # Denoise along the collected descending segment on the one loop.
        if len(segment) > 1:
            seeds = [seed + j + 100_003 * n_segment for j in range(noise.shape[0])]
            out = sample(
                model,
                x,
                solver="ddim",
                solver_options={"eta": 1.0},
                grid=times[segment],
                step_hooks=[dc.step_hook],
                seed=seeds,
                scale_noise=False,
            )
            assert isinstance(out, Tensor)
            x, n_segment = out, n_segment + 1
        if k is None:
            break
        # Re-noise up one step: q(x_{t+} | x_t) on the path.
        now, up = nodes[segment[-1]], nodes[k]
        ratio = up.alpha / now.alpha
        x = ratio * x + math.sqrt(max(up.sigma**2 - (ratio * now.sigma) ** 2, 0.0)) * randn_like(
            x, gens
        )
        segment = [k]
    return x


# ----------------------------------------------------------------------------------------------
# One entry point.

#: Names accepted by :func:`solve` (with the function each runs).
METHODS = ("dps", "red_diff", "dc", "repaint", "pinv")


def solve(
    model: Model, operator: Operator, y: Tensor, method: str = "dps", seed: int = 0, **options: Any
) -> Tensor:
    """Reconstruct x from measurements ``y`` (B, *y_shape) with ``method``:

    ``dps`` (:func:`dps`), ``red_diff`` (:func:`red_diff`), ``dc`` (the data-consistency recipe,
    :func:`data_consistency_sample`), ``repaint`` (:func:`repaint`) or ``pinv`` (A^+ y, the
    zero-filled / least-squares baseline). ``options`` go to that function (nfe=, steps=,
    zeta=, lr=, lam=, weight=, ...). Sample i starts from the noise of generator seed + i.
    """
    name = method.lower().replace("-", "_")
    if name not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    _check_y(operator, y)
    if name == "pinv":
        return apply_pinv(operator, y, int(options.get("cg_iters", 30)))
    if name == "red_diff":
        return red_diff(model, operator, y, seed=seed, **options)
    noise = randn_like(
        torch.empty(y.shape[0], *operator.x_shape, dtype=y.dtype, device=y.device),
        make_generators(seed, y.shape[0]),
    )
    if name == "dps":
        return dps(model, operator, y, noise, seed=seed, **options)
    if name == "dc":
        return data_consistency_sample(model, operator, y, noise, seed=seed, **options)
    return repaint(model, operator, y, noise, seed=seed, **options)
