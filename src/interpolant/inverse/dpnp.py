"""DPnP: diffusion plug-and-play posterior sampling by split Gibbs (Xu and Chi 2024, "Provably
robust score-based diffusion posterior sampling for plug-and-play image reconstruction", Alg. 1),
for y = A x + s n (A linear, s > 0).

The joint pi(z, x) ∝ p(z) N(x; z, eta^2 I) N(y; A x, s^2 I) has the z-marginal
p(z) N(y; A z, s^2 I + eta^2 A A^T), the posterior of a measurement with inflated noise, which
is p(z | y) as eta -> 0. Gibbs sampling alternates two exact conditionals:

- the proximal (likelihood) step x ~ p(x | z, y) ∝ N(x; z, eta^2 I) N(y; A x, s^2 I), a Gaussian
  drawn by Matheron's rule on A's row space: x = z + eta w, then
  x <- x + eta^2 A^T (eta^2 A A^T + s^2 I)^{-1} (y - A x - s e);
- the denoising (prior) step z ~ p(z | x) ∝ p(z) N(x; z, eta^2 I): x is a draw of the forward
  process at the node t_eta where sigma / alpha = eta (x_t = alpha x), so the model's reverse
  chain from t_eta to 0 (ancestral DDIM, eta_ddim = 1, on a Karras grid) samples it; the paper's
  DDS / DDIM denoisers are this chain.

eta is annealed geometrically from ``eta_max`` to ``eta_min`` over the iterations (the paper's
schedule decays eta to a small floor); the result is the last z. NFE = iterations x
``denoise_steps``. Differences from the paper: dense row-space algebra for the likelihood step
(small D; the paper uses the operator's SVD or conjugate gradients), and the prior step is the
library's ancestral sampler rather than the paper's two-stage DDS.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import UserError, WrongTypeError
from ..predictions import Model
from ..randomness import Streams, derive_seed
from ..solvers import Sampler, sample
from ..solvers.dpm import DDIM
from ..solvers.grids import Karras
from .base import Operator, Reconstruction, Rows
from .operators import as_matrix
from .posterior import matheron_update, row_space
from .solvers import _check_y, apply_pinv

#: DPnP's streams: the likelihood step's draws (per sample) and the prior step's seeds.
DPNP_LIKELIHOOD_STREAM, DPNP_PRIOR_STREAM = "dpnp-likelihood", "dpnp-prior"


def eta_schedule(iterations: int, eta_max: float, eta_min: float) -> list[float]:
    """Geometric annealing eta_k = eta_max (eta_min / eta_max)^(k / (iterations - 1))."""
    if iterations == 1:
        return [eta_min]
    ratio = eta_min / eta_max
    return [eta_max * ratio ** (k / (iterations - 1)) for k in range(iterations)]


def likelihood_step(
    z: Tensor, y_r: Tensor, a: Tensor, noise_var: float, eta: float, streams: Streams
) -> Tensor:
    """A draw of p(x | z, y) ∝ N(x; z, eta^2 I) N(y_r; A_r x, s^2 I) per row (flat (B, D),
    float64; A_r (r, D) and y_r (B, r) on the row space), by Matheron's rule."""
    w = streams.normal((a.shape[1],), dtype=torch.float64).to(z.device)
    e = streams.normal((a.shape[0],), dtype=torch.float64).to(z.device)
    eye = torch.eye(a.shape[0], dtype=torch.float64, device=z.device)
    s = eta**2 * a @ a.T + noise_var * eye
    return matheron_update(z + eta * w, a, y_r, math.sqrt(noise_var) * e, eta**2, s)


def dpnp(
    model: Model,
    operator: Operator,
    y: Tensor,
    *,
    iterations: int = 20,
    eta_max: float = 1.0,
    eta_min: float = 0.02,
    denoise_steps: int = 10,
    seed: int = 0,
    index: Rows | None = None,
) -> Reconstruction:
    """One DPnP draw per row of y (B, *y_shape) (see the module docstring): ``iterations`` Gibbs
    sweeps with eta from ``eta_max`` down to ``eta_min``, each prior step ``denoise_steps``
    model evaluations (row r: sample ``index[r]`` of the streams of ``seed``). The start z is
    A^+ y."""
    if not isinstance(operator, Operator):
        raise WrongTypeError(f"operator must be an inverse.Operator, got {type(operator).__name__}")
    if not operator.linear:
        raise UserError(
            f"dpnp's likelihood step is an exact Gaussian: {type(operator).__name__} is not "
            "linear (use dps or flowchef)"
        )
    if not operator.noise_std > 0:
        raise UserError("dpnp needs operator.noise_std > 0 (give the measurement's noise level)")
    for name, value in (("iterations", iterations), ("denoise_steps", denoise_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{name} must be an int >= 1, got {value!r}")
    if not 0 < eta_min <= eta_max:
        raise UserError(f"need 0 < eta_min <= eta_max, got eta_min={eta_min}, eta_max={eta_max}")
    _check_y(operator, y)
    rows = y.shape[0] if index is None else index
    streams = Streams(seed, rows, DPNP_LIKELIHOOD_STREAM)
    u_r, a = row_space(as_matrix(operator))
    a = a.to(y.device)
    y_r = y.to(torch.float64).flatten(1) @ u_r.to(y.device)
    shape = (y.shape[0], *operator.x_shape)
    z = apply_pinv(operator, y).to(torch.float64).flatten(1)
    path, nfe = model.path, 0
    for k, eta in enumerate(eta_schedule(iterations, eta_max, eta_min)):
        x = likelihood_step(z, y_r, a, operator.noise_std**2, eta, streams)
        # The forward-process node where sigma / alpha = eta: x is alpha-scaled to x_t there.
        t_eta = float(path.t_of_edm_sigma(torch.tensor(eta, dtype=torch.float64)).clamp(max=1.0))
        alpha = float(path.alpha(torch.tensor(t_eta, dtype=torch.float64)))
        spec = Sampler(
            DDIM(eta=1.0),
            steps=denoise_steps,
            grid=Karras(),
            t_max=t_eta,
            seed=derive_seed(DPNP_PRIOR_STREAM, seed, k),
        )
        x_t = (alpha * x).reshape(shape).to(y.dtype)
        out = sample(model, x_t, spec, scale_noise=False, index=index)
        z, nfe = out.x.to(torch.float64).flatten(1), nfe + out.nfe
    return Reconstruction(z.reshape(shape).to(y.dtype), nfe)


__all__ = [
    "DPNP_LIKELIHOOD_STREAM",
    "DPNP_PRIOR_STREAM",
    "dpnp",
    "eta_schedule",
    "likelihood_step",
]
