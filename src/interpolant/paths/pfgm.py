"""PFGM++ (Xu et al. 2023, arXiv 2302.04265): the EDM path with a heavy-tailed perturbation kernel.

Data y in R^N is perturbed as ``x = y + R u`` with u uniform on the sphere and
``R = r sqrt(b / (1 - b))``, ``b ~ Beta(N/2, D/2)`` (eq. 4 and App. B). With the alignment
``r = sigma sqrt(D)`` (sec. 4) the training loss and the sampling ODE are EDM's; only the
kernel and the prior change. Writing ``R^2 / r^2 = X / Y`` with ``X ~ chi2_N / 2`` and
``Y ~ chi2_D / 2`` shows the kernel is a multivariate Student-t with D degrees of freedom:

    x = y + sigma * g / sqrt(chi2_D / D),   g ~ N(0, I_N),

so D -> infinity gives back the Gaussian kernel of EDM exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..configurable import number, option
from .gaussian import EDM, edm_sigma_max_option

# Above this D, chi2_D / D is drawn by the Wilson-Hilferty cube-root normal approximation
# (relative error of its quantiles O(D^-3/2)) instead of summing D squared normals.
_EXACT_CHI2_MAX_D = 4096


@dataclass(frozen=True, kw_only=True)
class PFGM(EDM):
    """PFGM++ with augmentation dimension ``D`` on the EDM path (sigma(t) = sigma_max t).

    ``D = math.inf`` is EDM. ``noise_like`` draws the Student-t "eps" ``(x_t - x0) / sigma``,
    so ``sample_xt`` gives the PFGM++ perturbation, and ``interpolant.sample`` (which starts from
    ``sigma(t_max) * noise``) starts from the PFGM++ prior when given ``path.noise_like`` draws.
    ``D=None`` means infinity, and ``config()`` writes infinity as None (JSON has no infinity).
    The options are keyword-only: ``PFGM(D=128.0, sigma_max=80.0)``.
    """

    name: ClassVar[str] = "pfgm"
    D: float = option(
        128.0,
        help="augmentation dimension D > 0 (None or inf: EDM)",
        check=number(0, open_lo=True, allow_inf=True),
    )
    sigma_max: float = edm_sigma_max_option()

    def __post_init__(self) -> None:
        if self.D is None:
            object.__setattr__(self, "D", math.inf)
        super().__post_init__()

    def config(self) -> dict[str, Any]:
        # JSON has no infinity: D = inf is written as None, which reads back as inf.
        out = super().config()
        if math.isinf(self.D):
            out["D"] = None
        return out

    def _chi2_over_d(self, n: int, generator: torch.Generator | None, device, dtype) -> Tensor:
        """n draws of chi2_D / D (exactly 1 when D is infinite)."""
        if math.isinf(self.D):
            return torch.ones(n, device=device, dtype=dtype)
        if self.D <= _EXACT_CHI2_MAX_D and float(self.D).is_integer():
            g = torch.randn(n, int(self.D), generator=generator, device=device, dtype=dtype)
            return g.square().mean(dim=1)
        # Wilson-Hilferty: (chi2_D / D)^(1/3) ~ N(1 - 2/(9D), 2/(9D)).
        z = torch.randn(n, generator=generator, device=device, dtype=dtype)
        v = 2.0 / (9.0 * self.D)
        return (1.0 - v + math.sqrt(v) * z).clamp_min(1e-6) ** 3

    def noise_like(self, x0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        g = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        scale = self._chi2_over_d(x0.shape[0], generator, x0.device, x0.dtype)
        return g / scale.sqrt().reshape(-1, *([1] * (x0.ndim - 1)))

    def radius(self, x_minus_y: Tensor) -> Tensor:
        """R = ||x - y|| per sample (for tests of the radial law)."""
        return x_minus_y.flatten(1).norm(dim=1)

    def r_of_sigma(self, sigma: Tensor) -> Tensor:
        """The PFGM++ augmented radius aligned with EDM: r = sigma sqrt(D)."""
        return sigma * math.sqrt(self.D)

    def radial_log_density(self, R: Tensor, r: Tensor, N: int) -> Tensor:
        """Unnormalised log density of R: (N - 1) log R - (N + D)/2 log(R^2 + r^2)."""
        return (N - 1) * torch.log(R) - 0.5 * (N + self.D) * torch.log(R**2 + r**2)
