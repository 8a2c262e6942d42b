"""Asymptotically exact posterior sampling for y = A x + s n (A linear, s > 0) by sequential Monte
Carlo on the one sampling loop: hooks whose per-run state is an
:class:`~interpolant.scaling.fk.Weights` (the FK machinery: weights, ESS, resampling through
the ``smc-resample`` group streams, the normalising-constant estimate).

Both samplers are Feynman-Kac models on the reverse chain x_T -> ... -> x_0 of a stochastic
solver: potentials g_t with g_0(x_0) = N(y; A x_0, s^2 I) and incremental weights

    w_t = p(x_{t'} | x_t) g_{t'}(x_{t'}) / (q(x_{t'} | x_t) g_t(x_t))          (t' < t)

so that whatever the intermediate g_t, the weighted particles target p_model(x_0) N(y; A x_0,
s^2 I), the posterior of the model's (discretised) prior, as the number K of particles grows,
and the product of the epochs' mean weights estimates the evidence p_model(y) (Wu et al. 2023,
sec. 3; Cardoso et al. 2023, sec. 3).

- :class:`TDS` (twisted diffusion sampler, Wu et al. 2023, Alg. 1): g_t(x_t) = N(y; A
  x0_hat(x_t), (s^2 + r_t^2) I) with r_t^2 = Var[x0 | x_t] of N(0, d^2) data (PiGDM's choice;
  the official code uses s^2 + (1 - alpha_bar_t) for variance-preserving paths, the same up to
  the data scale) and, with ``twist=True``, the twisted proposal q = N(m + c^2 grad log g_t,
  c^2) (m, c the solver's Gaussian step); the gradient comes from the sampler's own (taped)
  forward pass. ``twist=False`` keeps the solver's kernel (any stochastic solver, no backprop).
- :class:`MCGdiff` (Cardoso et al. 2023, Alg. 1, written densely): g_t(x_t) = N(alpha_t y;
  A x_t, V_t) with V_t = sigma_t^2 A A^T + alpha_t^2 s^2 I, the exact law of A x_t - alpha_t y
  under the forward process, no network call; the proposal is the exact Gaussian conditional
  q ∝ N(x'; m, c^2 I) N(alpha' y; A x', V'), drawn by Matheron's rule, with the fully adapted
  weight w = N(alpha' y; A m, c^2 A A^T + V') / g_t(x_t). The paper works in the SVD basis of
  A with noiseless observed coordinates (and a time split for noisy ones); with A reduced to its
  row space this is the same model for orthonormal rows, and for general A and s > 0 it uses
  the exact forward-noised variance instead of the split (needs D small enough for the dense
  (m, D) matrix).

FPS-SMC (Dou and Song 2024) is :class:`~interpolant.inverse.fps.FPS`: MCGdiff's proposal with a
sampled observation path y_t in place of alpha_t y.

The solver's step is read as a Gaussian in its noise by probing it with the noise set to 0 and
to 1 (:func:`gaussian_step`, no model call): one-evaluation stochastic solvers only (ddim with
eta > 0, sde_euler, dpmpp_2m_sde); ``TDS(twist=False)`` works with any stochastic solver.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from typing_extensions import Unpack

from ..errors import UserError, WrongTypeError
from ..predictions import Model, Prediction
from ..randomness import Streams
from ..scaling.fk import RESAMPLERS, Weights
from ..solvers import Hook, Node, Plan, Run, Sampler, State, Step, as_sampler, sample
from ..solvers.base import fixed_run
from ..solvers.dpm import DDIM
from ..solvers.grids import Karras, Uniform
from ..solvers.spec import SamplerOptions
from .base import Operator, detached, model_gradient, seeded, start_noise, taped, x0_variance
from .operators import as_matrix
from .posterior import matheron_update, row_space
from .solvers import _check_y, _measured_count

#: The SMC samplers' default: ancestral DDIM (eta = 1) on 50 Karras steps (EDM sigma 0.002 at the
#: last nonzero node), seed 0. The last step to t = 0 is deterministic (x0_hat), so the last
#: proposal that sees y must act where Var[x0 | x_t] is below s^2: on a uniform grid its r_t is
#: 0.08 and at s = 0.01 the draws' residual ||y - A x||^2 / (m s^2) reads 37-98 (1 is exact).
SMC_SAMPLER = Sampler(DDIM(eta=1.0), steps=50, grid=Karras(), seed=0)
#: FPS's default: the paper's uniform grid. Its filter counts the measurement once per step as if
#: the noise were fresh (:mod:`~interpolant.inverse.fps`), so many steps near t = 0 (Karras)
#: over-fit y (selection draws, mix16 blur s = 0.01: coverage 0.74 on Karras, 0.86 uniform).
FPS_SAMPLER = Sampler(DDIM(eta=1.0), steps=50, grid=Uniform(), seed=0)
#: Named streams: the resampling draws (one row per group) and MCGdiff's proposal draws.
SMC_RESAMPLE_STREAM, MCGDIFF_STREAM = "smc-resample", "mcgdiff-proposal"
#: TDS's twisting covariances: s^2 I + r_t^2 A A^T (dense, on A's row space) or (s^2 + r_t^2) I.
TWIST_COVARIANCES = ("isotropic", "operator")


def _empty() -> Tensor:
    return torch.zeros(0, dtype=torch.float64)


def gaussian_log_density(resid_sq: Tensor, var: float, count: float) -> Tensor:
    """log N(r; 0, var I) per row from the squared norms ``resid_sq`` of ``count`` entries."""
    return -0.5 * (resid_sq / var + count * math.log(2 * math.pi * var))


def gaussian_step(
    run: Run, before: State, pred: Prediction, now: Node, nxt: Node
) -> tuple[Tensor, Tensor]:
    """The solver's step from ``before`` as x' = mean + std * z: (mean, std), elementwise, by
    stepping with the noise set to 0 and to 1 (exact for a step linear in its noise; costs no
    model call, and a solver that evaluates the model inside its step is refused)."""

    def refuse(x: Tensor, node: Node) -> Prediction:
        raise UserError(
            f"{run.solver!r} evaluates the model inside its step: the SMC proposal needs a "
            "one-evaluation stochastic solver (ddim with eta > 0, sde_euler, dpmpp_2m_sde)"
        )

    solver = run.solver
    if solver is None:
        raise UserError("the SMC samplers need a solver run")
    zero = fixed_run(run.path, run.n_steps, run.index, refuse, torch.zeros_like)
    one = fixed_run(run.path, run.n_steps, run.index, refuse, torch.ones_like)
    mean = solver.step(before, pred, now, nxt, zero).x
    return mean, solver.step(before, pred, now, nxt, one).x - mean


@dataclass
class PosteriorParticles(Weights):
    """The samplers' per-run state (:class:`~interpolant.scaling.fk.Weights` plus): per
    particle log g_t at its current state, the part of the current step's weight known before
    the next prediction (``pending``), TDS's gradient of log g_t, and the state the step started
    from (to read the step as a Gaussian)."""

    log_potential: Tensor = field(default_factory=_empty)
    pending: Tensor = field(default_factory=_empty)
    grad: Tensor | None = None
    before: State | None = None
    seen: int = -1
    proposal: Streams | None = None

    def follow(self, index: Tensor) -> None:
        self.log_potential, self.pending = self.log_potential[index], self.pending[index]
        if self.grad is not None:
            self.grad = self.grad[index]


class PosteriorSMC(Hook[PosteriorParticles]):
    """What :class:`TDS` and :class:`MCGdiff` share: the measurement (y of batch G, repeated
    for the K particles of each group), the checks and the resampling rule (adaptive: when the
    ESS of a group falls below ``ess_threshold`` * K; None: at every step)."""

    def __init__(
        self,
        operator: Operator,
        y: Tensor,
        particles: int,
        *,
        resampler: str = "systematic",
        ess_threshold: float | None = 0.5,
    ) -> None:
        if not isinstance(operator, Operator):
            raise WrongTypeError(
                f"operator must be an inverse.Operator, got {type(operator).__name__}"
            )
        if not operator.linear:
            raise UserError(
                f"{type(self).__name__} samples the posterior of a linear-Gaussian measurement; "
                f"{type(operator).__name__} is not linear (use dps or flowchef)"
            )
        if not operator.noise_std > 0:
            raise UserError(
                f"{type(self).__name__} needs operator.noise_std > 0: with s = 0 the likelihood "
                "is a point mass and no weight is finite (give the measurement's noise level)"
            )
        if isinstance(particles, bool) or not isinstance(particles, int) or particles < 1:
            raise UserError(f"particles must be an int >= 1, got {particles!r}")
        if resampler not in RESAMPLERS:
            raise UserError(f"resampler must be one of {RESAMPLERS}, got {resampler!r}")
        if ess_threshold is not None and not 0 < ess_threshold <= 1:
            raise UserError(f"ess_threshold must lie in (0, 1] or be None, got {ess_threshold!r}")
        _check_y(operator, y)
        self.operator, self.y, self.particles = operator, y, particles
        self.resampler, self.ess_threshold = resampler, ess_threshold
        self.noise_var = operator.noise_std**2

    def y_rows(self, like: Tensor) -> Tensor:
        """y repeated for every particle: (G * K, *y_shape) in ``like``'s dtype and device."""
        return self.y.to(like).repeat_interleave(self.particles, 0)

    def start(self, run: Run) -> PosteriorParticles:
        if run.solver is None or not run.solver.stochastic:
            raise UserError(
                f"{type(self).__name__} needs a stochastic solver (the proposal is its kernel); "
                f"{run.solver!r} is deterministic: use ddim with eta > 0, sde_euler or "
                "dpmpp_2m_sde"
            )
        batch, groups = run.x_start.shape[0], self.y.shape[0]
        if batch != groups * self.particles:
            raise UserError(
                f"batch {batch} must be y's batch {groups} times particles={self.particles}"
            )
        zeros = torch.zeros(batch, dtype=torch.float64, device=run.x_start.device)
        return PosteriorParticles(
            groups=groups,
            streams=Streams(run.streams.seed, groups, SMC_RESAMPLE_STREAM),
            log_weights=zeros.clone(),
            log_potential=zeros.clone(),
            pending=zeros.clone(),
            before=State(run.x_start),
        )

    def exact_log_likelihood(self, x0: Tensor) -> Tensor:
        """log N(y; A x0, s^2 I) per particle over the measured entries (g_0)."""
        y = self.y_rows(x0)
        resid = (y - self.operator(x0)).flatten(1).to(torch.float64)
        count = float(_measured_count(self.operator, self.y))
        return gaussian_log_density(resid.square().sum(1), self.noise_var, count)


class TDS(PosteriorSMC):
    """The twisted diffusion sampler (Wu et al. 2023, Alg. 1) as one hook (see the module
    docstring): twisting functions g_t = N(y; A x0_hat(x_t), (s^2 + r_t^2) I) with r_t^2 =
    :func:`~interpolant.inverse.base.x0_variance` (``data_std`` d), the twisted proposal with
    ``twist=True`` (one-evaluation solvers; the run's model is taped, no extra NFE) or the
    solver's own kernel with ``twist=False`` (any stochastic solver, no gradients)."""

    def __init__(
        self,
        operator: Operator,
        y: Tensor,
        particles: int,
        *,
        twist: bool = True,
        data_std: float = 1.0,
        covariance: str = "isotropic",
        resampler: str = "systematic",
        ess_threshold: float | None = 0.5,
    ) -> None:
        super().__init__(operator, y, particles, resampler=resampler, ess_threshold=ess_threshold)
        if not data_std > 0:
            raise UserError(f"data_std must be > 0, got {data_std}")
        if covariance not in TWIST_COVARIANCES:
            raise UserError(f"covariance must be one of {TWIST_COVARIANCES}, got {covariance!r}")
        self.twist, self.data_std, self.covariance = bool(twist), float(data_std), covariance
        self.count = float(_measured_count(operator, y))
        self.a, self.y_r = _empty(), _empty()
        if covariance == "operator":
            # A on its row space (dense): g_t's covariance s^2 I + r_t^2 A A^T lives there.
            u_r, self.a = row_space(as_matrix(operator))
            self.y_r = y.to(torch.float64).flatten(1) @ u_r

    def __repr__(self) -> str:
        return f"TDS(particles={self.particles}, twist={self.twist})"

    def prepare(self, plan: Plan) -> Plan:
        return Plan(taped(plan.model), plan.grid, plan.x) if self.twist else plan

    def twisting_energy(self, node: Node) -> tuple[Any, Tensor]:
        """(x0 -> -log g_t(x0) per particle, with its normaliser; the log normaliser alone).

        ``covariance="operator"``: g_t = N(y_r; A_r x0_hat, s^2 I + r_t^2 A_r A_r^T) on A's row
        space (PiGDM's covariance, Song et al. 2023, eq. 7: the law of A x_0 - y given x_t
        when x_0 | x_t ~ N(x0_hat, r_t^2 I)); ``"isotropic"``: N(y; A x0_hat, (s^2 + r_t^2) I)
        (the official code's choice, the same for orthonormal rows, e.g. inpainting)."""
        r2 = x0_variance(node, self.data_std)
        if self.covariance == "isotropic":
            var = self.noise_var + r2

            def energy(x0: Tensor) -> Tensor:
                resid = (self.y_rows(x0) - self.operator(x0)).flatten(1)
                return resid.square().sum(1) / (2 * var)

            iso_norm = 0.5 * self.count * math.log(2 * math.pi * var)
            return energy, torch.tensor(iso_norm, dtype=torch.float64)
        a = self.a
        eye = torch.eye(a.shape[0], dtype=torch.float64, device=a.device)
        chol = torch.linalg.cholesky(self.noise_var * eye + r2 * a @ a.T)
        log_norm = torch.log(torch.diagonal(chol)).sum() + 0.5 * a.shape[0] * math.log(2 * math.pi)

        def quadratic(x0: Tensor) -> Tensor:
            flat = x0.flatten(1)
            y_r = self.y_r.to(flat).repeat_interleave(self.particles, 0)
            resid = y_r - flat @ a.to(flat).T
            white = torch.linalg.solve_triangular(chol.to(flat), resid.T, upper=False)
            return 0.5 * white.square().sum(0)

        return quadratic, log_norm

    def exact_log_likelihood(self, x0: Tensor) -> Tensor:
        """g_0 = log N(y; A x0, s^2 I) per particle (on the row space for ``operator``)."""
        if self.covariance == "isotropic":
            return super().exact_log_likelihood(x0)
        flat = x0.flatten(1).to(torch.float64)
        resid = self.y_r.to(flat).repeat_interleave(self.particles, 0) - flat @ self.a.to(flat).T
        return gaussian_log_density(resid.square().sum(1), self.noise_var, self.a.shape[0])

    def on_prediction(
        self, pred: Prediction, node: Node, run: Run, state: PosteriorParticles
    ) -> Prediction:
        if run.index == state.seen:  # a later evaluation inside the same step
            return detached(pred)
        if node.t != run.nodes[run.index].t:
            raise UserError(
                f"TDS needs the first prediction of a step at its start ({run.solver!r})"
            )
        state.seen = run.index
        energy, log_norm = self.twisting_energy(node)
        if self.twist:
            grad, value = model_gradient(pred, node, run, energy)
            state.grad = -grad
        else:
            with torch.no_grad():
                value = energy(pred.x0.detach())
        log_g = -value.to(torch.float64) - log_norm.to(value.device)
        # This completes the previous step's weight: g_t(x_t) over the g of its start.
        state.reweight(log_g + state.pending, run.index)
        state.log_potential, state.pending = log_g, torch.zeros_like(log_g)
        return detached(pred)

    def on_step(self, x_state: State, step: Step, run: Run, state: PosteriorParticles) -> State:
        final = step.index == run.n_steps - 1
        correction = torch.zeros_like(state.log_potential)
        grad, pred, before = state.grad, step.pred, state.before
        if self.twist and grad is not None and pred is not None and before is not None:
            mean, std = gaussian_step(run, before, pred, step.now, step.nxt)
            g = grad.to(x_state.x.dtype)
            shift = std.square() * g
            # log p(x'|x) - log q(x'|x) at x' = mean + std z + std^2 g: -std z g - std^2 g^2 / 2.
            moved = (x_state.x - mean) * g + 0.5 * shift * g
            correction = -moved.flatten(1).sum(1).to(torch.float64)
            x_state = x_state.replace(x=x_state.x + shift)
        state.pending = correction - state.log_potential
        # The weights are complete up to x_t: resample the paths (x_t, x') by them.
        x_state = state.resample(x_state, step.index + 1, self.resampler, self.ess_threshold)
        if final:
            state.reweight(state.pending + self.exact_log_likelihood(x_state.x), step.index + 1)
            state.pending = torch.zeros_like(state.pending)
        state.grad, state.before = None, x_state
        return x_state


class MCGdiff(PosteriorSMC):
    """MCGdiff (Cardoso et al. 2023), dense form (see the module docstring): potentials
    N(alpha_t y; A x_t, sigma_t^2 A A^T + alpha_t^2 s^2 I) on A's row space, the exact Gaussian
    conditional proposal (Matheron's rule, draws from the ``mcgdiff-proposal`` stream of the
    run) and fully adapted weights; no network call beyond the solver's."""

    def __init__(
        self,
        operator: Operator,
        y: Tensor,
        particles: int,
        *,
        resampler: str = "systematic",
        ess_threshold: float | None = 0.5,
    ) -> None:
        super().__init__(operator, y, particles, resampler=resampler, ess_threshold=ess_threshold)
        u_r, self.a = row_space(as_matrix(operator))  # (m, r), (r, D)
        self.y_r = y.to(torch.float64).flatten(1) @ u_r  # (G, r)
        self.gram = self.a @ self.a.T

    def __repr__(self) -> str:
        return f"MCGdiff(particles={self.particles})"

    def _forward_var(self, node: Node) -> Tensor:
        """V_t = sigma_t^2 A A^T + alpha_t^2 s^2 I on the row space."""
        eye = torch.eye(self.gram.shape[0], dtype=torch.float64, device=self.gram.device)
        return node.sigma**2 * self.gram + node.alpha**2 * self.noise_var * eye

    def _log_normal(self, resid: Tensor, cov: Tensor) -> Tensor:
        chol = torch.linalg.cholesky(cov)
        white = torch.linalg.solve_triangular(chol, resid.T, upper=False)
        logdet = 2 * torch.log(torch.diagonal(chol)).sum()
        return -0.5 * (white.square().sum(0) + logdet + resid.shape[1] * math.log(2 * math.pi))

    def log_potential(self, x: Tensor, node: Node) -> Tensor:
        """log g_t(x_t) per particle."""
        flat = x.flatten(1).to(torch.float64)
        resid = node.alpha * self._rows() - flat @ self.a.T
        return self._log_normal(resid, self._forward_var(node))

    def _rows(self) -> Tensor:
        return self.y_r.repeat_interleave(self.particles, 0)

    def observation(
        self, state: PosteriorParticles, now: Node, nxt: Node, c2: float
    ) -> tuple[Tensor, Tensor]:
        """The pseudo-observation of x_{t'} and its noise covariance on the row space, one row
        per particle: (alpha' y, V'), the exact law of A x_{t'} - alpha' y (FPS overrides)."""
        return nxt.alpha * self._rows(), self._forward_var(nxt)

    def start(self, run: Run) -> PosteriorParticles:
        state = super().start(run)
        self.a, self.y_r, self.gram = (
            v.to(run.x_start.device) for v in (self.a, self.y_r, self.gram)
        )
        log_g = self.log_potential(run.x_start, run.nodes[0])
        state.proposal = run.streams_for(MCGDIFF_STREAM)
        state.reweight(log_g, 0)
        state.log_potential = log_g
        return state

    def on_step(self, x_state: State, step: Step, run: Run, state: PosteriorParticles) -> State:
        if step.pred is None or state.before is None:
            raise UserError(f"MCGdiff needs a prediction at every step ({run.solver!r})")
        mean, std = gaussian_step(run, state.before, step.pred, step.now, step.nxt)
        c2 = float(std.flatten()[0]) ** 2
        if not torch.allclose(std, torch.full_like(std, math.sqrt(c2)), rtol=1e-6, atol=1e-12):
            raise UserError(
                f"MCGdiff needs a solver whose noise has one scale per step ({run.solver!r})"
            )
        nxt, shape = step.nxt, x_state.x.shape
        y_next, v_next = self.observation(state, step.now, nxt, c2)
        s_next = c2 * self.gram + v_next
        flat_mean = mean.flatten(1).to(torch.float64)
        # Fully adapted weight: int p(x'|x) g_{t'}(x') dx' / g_t(x_t).
        inc = self._log_normal(y_next - flat_mean @ self.a.T, s_next) - state.log_potential
        x_new = x_state.x.flatten(1).to(torch.float64)
        if c2 > 0 and state.proposal is not None:
            # The exact Gaussian conditional of x' given alpha' y (Matheron's rule).
            w = state.proposal.normal((self.a.shape[0],), dtype=torch.float64)
            e = w.to(x_new.device) @ torch.linalg.cholesky(v_next).T
            x_new = matheron_update(x_new, self.a, y_next, e, c2, s_next)
        x_state = x_state.replace(x=x_new.to(x_state.x.dtype).reshape(shape))
        state.log_potential = self.log_potential(x_state.x, nxt)
        state.reweight(inc, step.index + 1)
        if step.index < run.n_steps - 1:
            x_state = state.resample(x_state, step.index + 1, self.resampler, self.ess_threshold)
        state.before = x_state
        return x_state


# ----------------------------------------------------------------------------------------------
# Entry points.


@dataclass
class SMCResult:
    """``x`` (B * n, *x_shape): n posterior draws per measurement, measurement-major (one draw
    by the final weights per group of K particles); ``particles`` (B * n, K, ...) with their
    final ``log_weights``; ``log_evidence`` (B * n,): log Z_hat, an estimate of log p_model(y)
    per group (over A's row space, as :class:`~interpolant.inverse.posterior.MixturePosterior`);
    the mean ESS / K at each weighting step, the resampling steps and ``nfe``, the model
    evaluations per draw (K times the loop's NFE per particle)."""

    x: Tensor
    particles: Tensor
    log_weights: Tensor
    log_evidence: Tensor
    ess: list[tuple[int, float]]
    resample_steps: list[int]
    nfe: int


METHODS = ("tds", "tds_prior", "mcgdiff", "fps")


def smc_posterior(
    model: Model,
    operator: Operator,
    y: Tensor,
    sampler: Sampler | None = None,
    *,
    method: str = "tds",
    particles: int = 16,
    n: int = 1,
    data_std: float = 1.0,
    twist_covariance: str = "isotropic",
    resampler: str = "systematic",
    ess_threshold: float | None = 0.5,
    hooks: Sequence[Hook[Any]] = (),
    **shortcuts: Unpack[SamplerOptions],
) -> SMCResult:
    """``n`` draws per measurement of y (B, *y_shape) from p_model(x | y) by ``method``:
    ``tds`` (:class:`TDS`, twisted), ``tds_prior`` (TDS with the solver's kernel),
    ``mcgdiff`` (:class:`MCGdiff`) or ``fps`` (:class:`~interpolant.inverse.fps.FPS`, whose
    ``log_evidence`` is that of its sampled observation path, not of y), with ``particles`` K
    per draw on ``sampler`` (default :data:`SMC_SAMPLER`, :data:`FPS_SAMPLER` for ``fps``;
    ``shortcuts`` change it). The start noise is the ``inverse-start``
    stream of the spec's seed (row j: particle slot j), the resampling the ``smc-resample``
    group streams. ``twist_covariance`` is TDS's (:meth:`TDS.twisting_energy`)."""
    name = method.lower().replace("-", "_")
    if name not in METHODS:
        raise UserError(f"unknown SMC method {method!r}; choose one of {METHODS}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UserError(f"n must be an int >= 1, got {n!r}")
    default = FPS_SAMPLER if name == "fps" else SMC_SAMPLER
    spec, seed = seeded(as_sampler(default if sampler is None else sampler, **shortcuts))
    _check_y(operator, y)
    groups_y = y.repeat_interleave(n, 0)
    hook: PosteriorSMC
    if name in ("mcgdiff", "fps"):
        from .fps import FPS

        hook = (FPS if name == "fps" else MCGdiff)(
            operator, groups_y, particles, resampler=resampler, ess_threshold=ess_threshold
        )
    else:
        hook = TDS(
            operator,
            groups_y,
            particles,
            twist=name == "tds",
            data_std=data_std,
            covariance=twist_covariance,
            resampler=resampler,
            ess_threshold=ess_threshold,
        )
    batch = groups_y.shape[0] * particles
    noise = start_noise(seed, (batch, *operator.x_shape), y)
    out = sample(model, noise, spec, hooks=[*hooks, hook])
    state = out.state(hook)
    x, _ = state.draw(out.x)
    return SMCResult(
        x=x,
        particles=out.x.view(groups_y.shape[0], particles, *operator.x_shape),
        log_weights=state.grouped(),
        log_evidence=state.log_normalizer(),
        ess=state.ess,
        resample_steps=state.resample_steps,
        nfe=out.nfe * particles,
    )


__all__ = [
    "FPS_SAMPLER",
    "MCGDIFF_STREAM",
    "METHODS",
    "SMC_RESAMPLE_STREAM",
    "SMC_SAMPLER",
    "TDS",
    "MCGdiff",
    "PosteriorParticles",
    "PosteriorSMC",
    "SMCResult",
    "gaussian_log_density",
    "gaussian_step",
    "smc_posterior",
]
