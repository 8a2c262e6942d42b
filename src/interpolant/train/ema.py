"""Exponential moving averages of the weights, EDM and EDM2 style, and EDM2 post-hoc EMA.

Every update is ``theta_ema <- beta theta_ema + (1 - beta) theta`` with ``beta`` a pure function
of the step, so a resumed run needs only the averaged tensors.

* ``halflife`` (EDM, Karras et al. 2022, training_loop.py): with ``nimg = step * batch_size``
  images seen before update ``step`` (0-based), the half-life in images is
  ``h = min(1000 * halflife_kimg, rampup_ratio * nimg)`` (no ramp-up when rampup_ratio is None)
  and ``beta = 0.5 ** (batch_size / max(h, 1e-8))``; the first update copies the weights.
* ``power`` (EDM2, Karras et al. 2024, eq. 3): after ``t = step + 1`` updates
  ``beta = (1 - 1 / t) ** (gamma + 1)``, which averages the trajectory with weight
  ``~ tau ** gamma``; gamma follows from the relative width sigma_rel (eq. 4,
  ``sigma_rel = sqrt((gamma + 1) / ((gamma + 2)^2 (gamma + 3)))``).

Post-hoc EMA (EDM2, sec. 3.2 and App. C.2): snapshots of power EMAs with a few gammas, taken
during training, are combined by least squares into the EMA of any other sigma_rel and length.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import UserError


def halflife_beta(
    step: int, batch_size: int, halflife_kimg: float, rampup_ratio: float | None = 0.05
) -> float:
    """EDM's EMA decay for update ``step`` (0-based) with global batch ``batch_size``."""
    halflife_nimg = halflife_kimg * 1000.0
    if rampup_ratio is not None:
        halflife_nimg = min(halflife_nimg, step * batch_size * rampup_ratio)
    return 0.5 ** (batch_size / max(halflife_nimg, 1e-8))


def power_beta(step: int, gamma: float) -> float:
    """EDM2's power-function EMA decay for update ``step`` (0-based): (1 - 1/t)^(gamma + 1)."""
    t = step + 1
    return (1.0 - 1.0 / t) ** (gamma + 1.0)


def gamma_to_sigma_rel(gamma: float) -> float:
    """Relative standard deviation of the power-function averaging profile (EDM2 eq. 4)."""
    if not gamma > -1.0:
        raise UserError(f"gamma must be > -1, got {gamma}")
    return float(np.sqrt((gamma + 1.0) / ((gamma + 2.0) ** 2 * (gamma + 3.0))))


def sigma_rel_to_gamma(sigma_rel: float) -> float:
    """Inverse of :func:`gamma_to_sigma_rel`: the largest real root of
    ``gamma^3 + 7 gamma^2 + (16 - s^-2) gamma + (12 - s^-2) = 0`` (EDM2 App. C.2)."""
    if not 0.0 < sigma_rel < 0.2886:
        raise UserError(f"sigma_rel must lie in (0, 0.2886), got {sigma_rel}")
    inv = sigma_rel**-2
    roots = np.roots([1.0, 7.0, 16.0 - inv, 12.0 - inv])
    return float(roots[np.abs(roots.imag) < 1e-9].real.max())


class EMA:
    """Averaged copies of a module's floating-point parameters (buffers are copied as is).

    ``kind`` is ``"halflife"`` or ``"power"``; the tensors live on the parameters' device with
    their dtype and sharding (DTensor shards under FSDP stay sharded).
    """

    def __init__(
        self,
        module: nn.Module,
        kind: str = "halflife",
        batch_size: int = 1,
        halflife_kimg: float = 500.0,
        rampup_ratio: float | None = 0.05,
        sigma_rel: float = 0.05,
    ):
        if kind not in ("halflife", "power"):
            raise UserError(f"kind must be 'halflife' or 'power', got {kind!r}")
        self.kind, self.batch_size = kind, int(batch_size)
        self.halflife_kimg, self.rampup_ratio = float(halflife_kimg), rampup_ratio
        self.sigma_rel = float(sigma_rel)
        self.gamma = sigma_rel_to_gamma(sigma_rel) if kind == "power" else float("nan")
        self.shadow: dict[str, Tensor] = {
            name: p.detach().clone() for name, p in module.named_parameters()
        }

    def beta(self, step: int) -> float:
        """Decay applied at update ``step`` (0-based)."""
        if self.kind == "power":
            return power_beta(step, self.gamma)
        return halflife_beta(step, self.batch_size, self.halflife_kimg, self.rampup_ratio)

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> float:
        """Average in the current weights of ``module`` after update ``step``; returns beta."""
        beta = self.beta(step)
        for name, p in module.named_parameters():
            self.shadow[name].lerp_(p.detach(), 1.0 - beta)  # exact copy when beta = 0
        return beta

    def state_dict(self) -> dict[str, Tensor]:
        return dict(self.shadow)

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Copy averaged tensors in; keys and shapes must match exactly."""
        missing, extra = set(self.shadow) - set(state), set(state) - set(self.shadow)
        if missing or extra:
            raise KeyError(f"EMA state mismatch: missing {sorted(missing)}, extra {sorted(extra)}")
        for name, value in state.items():
            self.shadow[name].copy_(value)

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        """Overwrite ``module``'s parameters with the averages."""
        for name, p in module.named_parameters():
            p.copy_(self.shadow[name])


# --- post-hoc EMA (EDM2 App. C.2) ------------------------------------------------------------


def _profile_dot(t_a: np.ndarray, g_a: np.ndarray, t_b: np.ndarray, g_b: np.ndarray) -> np.ndarray:
    """Inner product of the normalised power profiles p(tau) = (g+1) tau^g / t^(g+1) on [0, t]:
    int_0^min(t_a, t_b) p_a p_b dtau, in closed form."""
    t_min = np.minimum(t_a, t_b)
    num = (g_a + 1.0) * (g_b + 1.0) * t_min ** (g_a + g_b + 1.0)
    return num / ((g_a + g_b + 1.0) * t_a ** (g_a + 1.0) * t_b ** (g_b + 1.0))


def posthoc_coefficients(
    snapshot_steps: Sequence[float],
    snapshot_gammas: Sequence[float],
    target_step: float,
    target_gamma: float,
) -> np.ndarray:
    """Weights x with ``sum_i x_i snapshot_i ~ EMA(target_gamma) at target_step``.

    Least squares in L2 over the averaging profiles: ``A x = b`` with ``A_ij = <p_i, p_j>`` and
    ``b_i = <p_i, p_target>`` (EDM2 eq. 22). Steps count updates (t >= 1).
    """
    t = np.asarray(snapshot_steps, dtype=np.float64)[:, None]
    g = np.asarray(snapshot_gammas, dtype=np.float64)[:, None]
    if t.shape != g.shape or t.size == 0:
        raise UserError("snapshot_steps and snapshot_gammas must be non-empty and of equal length")
    if (t < 1).any() or target_step < 1:
        raise UserError("snapshot and target steps count updates and must be >= 1")
    a = _profile_dot(t, g, t.T, g.T)
    b = _profile_dot(t[:, 0], g[:, 0], np.float64(target_step), np.float64(target_gamma))
    return np.linalg.lstsq(a, b, rcond=None)[0]


@torch.no_grad()
def posthoc_reconstruct(
    snapshots: Iterable[tuple[int, float, dict[str, Tensor]]],
    target_sigma_rel: float,
    target_step: int | None = None,
) -> dict[str, Tensor]:
    """The power EMA with ``target_sigma_rel`` at ``target_step`` (default: the last snapshot),
    from ``(updates, gamma, state)`` snapshots of power EMAs (at least two gammas)."""
    snaps = list(snapshots)
    if not snaps:
        raise UserError("posthoc_reconstruct needs at least one snapshot")
    steps = [s for s, _, _ in snaps]
    target = max(steps) if target_step is None else target_step
    gammas = [g for _, g, _ in snaps]
    x = posthoc_coefficients(steps, gammas, target, sigma_rel_to_gamma(target_sigma_rel))
    out: dict[str, Tensor] = {}
    for weight, (_, _, state) in zip(x.tolist(), snaps):
        for name, value in state.items():
            term = value.to(torch.float64) * weight
            out[name] = term if name not in out else out[name] + term
    return {name: value.to(snaps[0][2][name].dtype) for name, value in out.items()}
