"""FPS-SMC: filtering posterior sampling (Dou and Song 2024, "Diffusion posterior sampling for
linear inverse problem solving: a filtering perspective", Alg. 2 and Prop. B.3) as one hook on
the sampling loop, for y = A x + s n (A linear, s > 0).

The forward process x_t = alpha_t x_0 + sigma_t eps has a twin in measurement space,
y_t = alpha_t y + sigma_t A eps = A x_t + alpha_t s n (sec. 3.1). FPS first draws a path
y_{t_0}, ..., y_0 = y of it backwards by the DDIM bridge with eta = 1 (eq. 9; in A's row space):

    y_{t'} = alpha' y + sqrt(sigma'^2 - c^2) (y_t - alpha_t y) / sigma_t + c A z,
    c = sigma' sqrt(1 - (alpha_t sigma' / (sigma_t alpha'))^2),

one path per posterior draw (the ``fps-observation`` group streams), and then filters the reverse
chain against it as a linear-Gaussian state-space model with observations
y_{t'} = A x_{t'} + e, e ~ N(0, alpha'^2 s^2 I) (eq. 11): the proposal is the exact Gaussian
conditional q ∝ N(x'; m, c_x^2 I) N(y_{t'}; A x', alpha'^2 s^2 I) of the solver's step (mean m,
std c_x; Matheron's rule, as MCGdiff) and the weight is the predictive likelihood
N(y_{t'}; A m, c_x^2 A A^T + alpha'^2 s^2 I) (eq. 13), with adaptive resampling (``ess_threshold``;
None resamples at every step, as Alg. 2). Unlike TDS and MCGdiff the weights are not ratios of
potentials: the particles target p(x_{t'} | y_{t'}, ..., y_{t_0}), and at t = 0 (where y_0 = y
and the noise is s^2) p(x_0 | y) up to the model and the Markov approximation of eq. 11, which
Dou and Song show is exact as the steps shrink (Thm. 2). The product of the mean weights,
``log_evidence``, estimates the likelihood of the whole sampled observation path, not p(y).

Differences from the paper: the path is drawn in A's row space with dense (r, r) algebra (the
paper uses the SVD of A, the same for orthonormal rows); the start x_{t_0} is not weighted (as
the official code); any one-evaluation stochastic solver gives the proposal (DDIM eta = 1 is
the paper's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import torch
from torch import Tensor

from ..errors import UserError
from ..randomness import Streams
from ..solvers import Node, Run
from .smc import MCGdiff, PosteriorParticles, _empty

#: The named stream of FPS's observation paths (one row per posterior draw).
FPS_STREAM = "fps-observation"


def bridge_std(now: Node, nxt: Node) -> float:
    """c of the DDIM (eta = 1) bridge from t to t' < t: sigma' sqrt(1 - (alpha sigma' / (sigma
    alpha'))^2), the std of the exact reverse kernel q(x_{t'} | x_t, x_0); 0 at t' = 0."""
    if nxt.sigma <= 0 or now.sigma <= 0:
        return 0.0
    ratio = now.alpha * nxt.sigma / (now.sigma * nxt.alpha)
    return nxt.sigma * math.sqrt(max(1.0 - ratio**2, 0.0))


@dataclass
class FPSParticles(PosteriorParticles):
    """FPS's per-run state: :class:`~interpolant.inverse.smc.PosteriorParticles` plus the
    current point y_t of each group's observation path (G, r) and the path's streams."""

    y_path: Tensor = field(default_factory=_empty)
    observations: Streams | None = None


class FPS(MCGdiff):
    """FPS-SMC (see the module docstring): ``particles`` K per posterior draw, resampling when
    a group's ESS falls below ``ess_threshold`` * K (None: at every step, as Alg. 2)."""

    def __repr__(self) -> str:
        return f"FPS(particles={self.particles})"

    def log_potential(self, x: Tensor, node: Node) -> Tensor:
        # Filtering weights are predictive likelihoods, not ratios: nothing to divide by.
        return torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)

    def _bridge_noise(self, state: FPSParticles, scale: float) -> Tensor:
        """scale * A z per group in the row space (covariance scale^2 A A^T)."""
        assert state.observations is not None
        w = state.observations.normal((self.a.shape[0],), dtype=torch.float64)
        return scale * w.to(self.gram.device) @ torch.linalg.cholesky(self.gram).T

    def start(self, run: Run) -> FPSParticles:
        base = super().start(run)
        state = FPSParticles(**{f.name: getattr(base, f.name) for f in fields(base)})
        state.observations = Streams(run.streams.seed, state.groups, FPS_STREAM)
        first = run.nodes[0]
        # y_{t_0} ~ N(alpha_0 y, sigma_0^2 A A^T), the forward law of the twin path.
        state.y_path = first.alpha * self.y_r + self._bridge_noise(state, first.sigma)
        return state

    def observation(
        self, state: PosteriorParticles, now: Node, nxt: Node, c2: float
    ) -> tuple[Tensor, Tensor]:
        """Advance the observation path by the bridge (eq. 9) and return (y_{t'} per particle,
        alpha'^2 s^2 I)."""
        if not isinstance(state, FPSParticles):
            raise UserError("FPS.observation needs the FPS run state")
        c = bridge_std(now, nxt)
        keep = math.sqrt(max(nxt.sigma**2 - c**2, 0.0)) / now.sigma if now.sigma > 0 else 0.0
        y = self.y_r
        state.y_path = nxt.alpha * y + keep * (state.y_path - now.alpha * y)
        if c > 0:
            state.y_path = state.y_path + self._bridge_noise(state, c)
        eye = torch.eye(self.gram.shape[0], dtype=torch.float64, device=self.gram.device)
        rows = state.y_path.repeat_interleave(self.particles, 0)
        return rows, nxt.alpha**2 * self.noise_var * eye


__all__ = ["FPS", "FPS_STREAM", "FPSParticles", "bridge_std"]
