"""Minibatch couplings between the source draws and the data (OT-CFM, Tong et al. 2023).

The plain objective pairs each data point x0_i with an independent source draw eps_i. A
coupling keeps both sets of draws and only re-pairs them inside the batch,

    eps_i  <-  eps_{pi(i)},

so the marginal of x0 and of eps over the batch are unchanged and only their joint law moves
towards the optimal-transport plan. For the linear path x_t = (1 - t) x0 + t eps the straight
lines between OT pairs cross less, so the learned velocity field is straighter and few-step ODE
sampling is more accurate (Tong et al. 2023, Sec. 3.2 and Prop. 3.4; Pooladian et al. 2023).

* ``independent``: the identity pairing (the plain objective).
* ``ot``: exact minibatch OT: ``scipy.optimize.linear_sum_assignment`` on the squared Euclidean
  cost C_ij = ||x0_i - eps_j||^2 (flattened, float64). For equal batch sizes the optimal plan of
  the uniform empirical measures is a permutation (Birkhoff), which this finds exactly.
* ``sinkhorn``: the entropic plan pi = argmin <pi, C> - reg * mean(C) * H(pi) with uniform
  marginals (log-domain Sinkhorn, float64); each x0_i draws its partner j ~ pi(j | i) with the
  loss's generator. reg is relative to the mean cost, so it does not depend on the data's scale.
  Unlike ``ot`` this may reuse a draw; the eps marginal is kept in expectation.

Which marginals stay valid. The pairing never changes the law of x0 nor the law of eps, so for
any path with alpha(1) = 0 (linear/rectified flow, trigonometric) x_1 = sigma(1) eps still has
the source law and x_0 = x0 the data law: ODE sampling from the source remains valid. The
intermediate marginals p_t change (that is the point). Because x_t given x0 is no longer
N(alpha x0, sigma^2 I), the Tweedie relation score = -E[eps | x_t] / sigma no longer holds: the
trained model is a *flow* (its velocity, and the linear identities between x0, eps, velocity and
v predictions, remain exact) but not a score, so use deterministic ODE solvers, not SDE samplers
or score-based guidance (Tong et al. 2023 discuss the same restriction of OT-CFM to flows). On
diffusion paths with alpha(1) > 0 (VP, EDM at a finite sigma_max) the start law
alpha(1) x0 + sigma(1) eps also changes slightly, since x0 and eps are no longer independent.

Determinism: eps is drawn exactly as without coupling (same generator, same order), and the
``ot`` permutation is a deterministic function of the batch (scipy breaks ties by index), so a
run is reproducible. The partner of sample i now depends on the other samples of its batch,
hence on the batch composition: the trainer calls the loss once per ``noise_block`` (default the
per-rank micro-batch ``batch_per_gpu``), so under DDP each rank couples within its own
micro-batch, as torchcfm does, and runs with equal ``noise_block`` pair identically whatever the
number of ranks or accumulation rounds.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from ..errors import UserError, WrongTypeError

COUPLINGS = ("independent", "ot", "sinkhorn")


class Coupling:
    """A minibatch pairing of source draws with data (see the module docstring).

    Args:
        name: "independent", "ot" (exact) or "sinkhorn" (entropic).
        reg: the entropic regularisation of "sinkhorn", relative to the mean cost (> 0).
        iters: Sinkhorn iterations (log domain).
    """

    def __init__(self, name: str = "independent", reg: float = 0.05, iters: int = 200) -> None:
        if name not in COUPLINGS:
            raise UserError(f"coupling must be one of {COUPLINGS}, got {name!r}")
        if not (isinstance(reg, (int, float)) and math.isfinite(reg) and reg > 0):
            raise UserError(f"coupling reg must be a positive number, got {reg!r}")
        if not (isinstance(iters, int) and iters >= 1):
            raise UserError(f"coupling iters must be a positive integer, got {iters!r}")
        self.name, self.reg, self.iters = name, float(reg), iters

    def cost(self, x0: Tensor, eps: Tensor) -> Tensor:
        """C_ij = ||x0_i - eps_j||^2 over the flattened features (float64, shape (B, B))."""
        a = x0.detach().flatten(1).double().cpu()
        b = eps.detach().flatten(1).double().cpu()
        return torch.cdist(a, b).square()

    def partners(self, x0: Tensor, eps: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Index j = pi(i) of the source draw paired with x0_i (int64, shape (B,), on CPU)."""
        _check_pair(x0, eps)
        batch = x0.shape[0]
        if self.name == "independent" or batch == 1:
            return torch.arange(batch)
        cost = self.cost(x0, eps)
        if self.name == "ot":
            # Exact assignment: rows (data) in order, cols[i] the optimal partner of row i.
            rows, cols = linear_sum_assignment(cost.numpy())
            assert np.array_equal(rows, np.arange(batch))
            return torch.from_numpy(cols).long()
        plan = sinkhorn_plan(cost, self.reg * float(cost.mean()), self.iters)
        # Draw each row's partner from the conditional plan pi(j | i).
        device = generator.device if generator is not None else None
        u = torch.rand(batch, generator=generator, device=device, dtype=torch.float64).cpu()
        cdf = (plan / plan.sum(dim=1, keepdim=True)).cumsum(dim=1)
        return torch.searchsorted(cdf, u[:, None]).squeeze(1).clamp(max=batch - 1)

    def pair(self, x0: Tensor, eps: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The source draws re-paired with x0: eps[pi(i)] for each row i."""
        if self.name == "independent":
            _check_pair(x0, eps)
            return eps
        return eps[self.partners(x0, eps, generator).to(eps.device)]

    def config(self) -> dict[str, Any]:
        """JSON-serialisable description; :func:`coupling_from_config` rebuilds it."""
        if self.name == "sinkhorn":
            return {"name": self.name, "reg": self.reg, "iters": self.iters}
        return {"name": self.name}

    def __repr__(self) -> str:
        if self.name == "sinkhorn":
            return f"Coupling({self.name!r}, reg={self.reg}, iters={self.iters})"
        return f"Coupling({self.name!r})"


def sinkhorn_plan(cost: Tensor, reg: float, iters: int) -> Tensor:
    """Entropic OT plan between two uniform measures of size B (log-domain Sinkhorn, Cuturi
    2013): pi_ij = exp((f_i + g_j - C_ij) / reg), rows and columns summing to 1 / B."""
    batch = cost.shape[0]
    log_marginal = torch.full((batch,), -math.log(batch), dtype=torch.float64)
    f = torch.zeros(batch, dtype=torch.float64)
    g = torch.zeros(batch, dtype=torch.float64)
    for _ in range(iters):
        # Alternate exact row and column projections (soft-min updates).
        f = reg * (log_marginal - torch.logsumexp((g[None, :] - cost) / reg, dim=1))
        g = reg * (log_marginal - torch.logsumexp((f[:, None] - cost) / reg, dim=0))
    return torch.exp((f[:, None] + g[None, :] - cost) / reg)


def get_coupling(spec: Coupling | str | dict[str, Any] | None) -> Coupling:
    """A :class:`Coupling` from itself, its name, its config, or None (independent)."""
    if spec is None:
        return Coupling()
    if isinstance(spec, Coupling):
        return spec
    if isinstance(spec, str):
        return Coupling(spec)
    if isinstance(spec, dict):
        return coupling_from_config(spec)
    raise WrongTypeError(
        f"coupling must be a name {COUPLINGS}, a config dict or a Coupling, got {spec!r}"
    )


def coupling_from_config(config: dict[str, Any]) -> Coupling:
    """Rebuild a coupling from :meth:`Coupling.config`."""
    unknown = set(config) - {"name", "reg", "iters"}
    if "name" not in config or unknown:
        raise UserError(f"coupling config needs 'name' (and only reg, iters), got {config}")
    return Coupling(config["name"], config.get("reg", 0.05), config.get("iters", 200))


def _check_pair(x0: Tensor, eps: Tensor) -> None:
    if x0.shape != eps.shape:
        raise UserError(
            f"coupling needs eps of the shape of x0 {tuple(x0.shape)}, got {tuple(eps.shape)}"
        )
