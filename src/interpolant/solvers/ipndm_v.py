"""iPNDM with variable steps (ComfyUI's ``ipndm_v``; zju-pi's diff-solvers ``iPNDM_v``, Zhou et
al. 2024, "Fast ODE-based sampling for diffusion models in around 5 steps", app. on iPNDM).

In the path-free coordinates y = x / alpha, rho = sigma / alpha, the probability-flow ODE is
dy / drho = eps_hat(y, rho) (see :mod:`.multistep_peers`, eq. 1), and an Adams-Bashforth step is
y' = y + h sum_j b_j eps_j over the newest k noise predictions (h = rho' - rho_0 < 0, newest
first). ``ipndm`` uses the equal-step weights b on every grid; ``ipndm_v`` makes them depend on
the step lengths h_1 = rho_0 - rho_1, h_2 = rho_1 - rho_2, h_3 = rho_2 - rho_3. Two sets:

* ``weights="exact"`` (default): b_j = (1 / h) int_{rho_0}^{rho'} L_j(r) dr, the Lagrange basis
  through the nodes (the variable-step Adams-Bashforth method of order k; Hairer, Norsett &
  Wanner, "Solving ODEs I", sec. III.5). It is ``lms`` with ComfyUI's final step.
* ``weights="comfyui"``: the peer's closed forms. With r = h / h_1, a_1 = h_1 / h_2, a_2 = h_2 /
  h_3 and q = h_1 (h_1 + h_2) / (h_2 (h_2 + h_3)),

      k = 2:  b = (1 + r/2, -r/2)                                    (AB2, exact on any grid)
      k = 3:  b += T_1 (1, -(1 + a_1), a_1),
              T_1 = (1 - h^2 / (3 h_1 (h_1 + h_2))) / 2
      k = 4:  b += T_2 (1, -(1 + a_1 + q), a_1 + q (1 + a_2), -q a_1),
              T_2 = ((1 - h / (3 (h + h_1))) / 2 + (1 - h / (2 (h + h_1))) h / (6 (h + h_1 + h_2)))
                    h (h + h_1) (h + h_1 + h_2) / (h_1 (h_1 + h_2) (h_1 + h_2 + h_3)).

  On equal steps k = 3 is AB3, but k = 4 gives (57, -65, 43, -11) / 24 instead of AB4's
  (55, -59, 37, -9) / 24 (third order). On variable steps k = 3 is exact only to O(h) in its
  last term, and the k = 4 weights sum to 1 + T_2 q (a_2 - a_1) instead of 1: exact on a grid
  geometric in rho (``logsnr``), off by O(h^2) on smooth grids (Karras) and by O(1) on grids
  with abrupt changes of step. The result is order 2 (measured 2.5-2.6 at 32-256 steps on
  log-uniform and Karras grids, tests/solvers/test_ipndm_v.py), against 4 for the exact weights.

Warm-up uses the lower orders; points at rho = infinity (alpha = 0, the start of flow paths)
are dropped from the history (the step after such a start is first order), and the final step
to sigma = 0 is the denoising step x' = x0_hat (as ComfyUI).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import ClassVar

from ..configurable import one_of, option
from .adams import lagrange_integrals
from .base import Node, Run, register
from .multistep_peers import NoisePoint, _finite, _NoiseMultistep


def comfyui_weights(h: float, gaps: list[float]) -> list[float]:
    """ComfyUI's ``ipndm_v`` weights b_j (newest first, module docstring) for a step of length
    ``h`` after the previous step lengths ``gaps`` = [h_1, h_2, h_3][:k - 1] (in rho)."""
    if not gaps:
        return [1.0]
    h1 = gaps[0]
    r = h / h1
    b = [1.0 + r / 2.0, -r / 2.0]
    if len(gaps) == 1:
        return b
    h2 = gaps[1]
    a1 = h1 / h2
    t1 = (1.0 - h * h / (3.0 * h1 * (h1 + h2))) / 2.0
    b = [b[0] + t1, b[1] - (1.0 + a1) * t1, a1 * t1]
    if len(gaps) == 2:
        return b
    h3 = gaps[2]
    a2, q = h2 / h3, h1 * (h1 + h2) / (h2 * (h2 + h3))
    s1, s2 = h + h1, h + h1 + h2
    t2 = ((1.0 - h / (3.0 * s1)) / 2.0 + (1.0 - h / (2.0 * s1)) * h / (6.0 * s2)) * (
        h * s1 * s2 / (h1 * (h1 + h2) * (h1 + h2 + h3))
    )
    return [b[0] + t2, b[1] - (1.0 + a1 + q) * t2, b[2] + (a1 + q * (1.0 + a2)) * t2, -q * a1 * t2]


@register
@dataclass(frozen=True)
class IPNDMV(_NoiseMultistep):
    """iPNDM with variable-step weights (ComfyUI ``ipndm_v``), order 1-4; ``weights`` picks the
    exact variable-step Adams-Bashforth weights or ComfyUI's closed forms (module docstring)."""

    name: ClassVar[str] = "ipndm_v"
    order: int = option(4, help="the largest Adams-Bashforth order", check=one_of(1, 2, 3, 4))
    weights: str = option(
        "exact",
        help="'exact' (variable-step Adams-Bashforth) or 'comfyui' (the peer's closed forms, "
        "order 2)",
        check=one_of("exact", "comfyui"),
    )

    def _usable(self, points: tuple[NoisePoint, ...]) -> tuple[NoisePoint, ...]:
        return _finite(points)[-self.order :]

    def _weights(self, rhos: list[float], rho_next: float, nxt: Node, run: Run) -> list[float]:
        h = rho_next - rhos[0]
        if len(rhos) == 1 or nxt.sigma == 0.0:
            return [h]  # first step, or the final denoising step x' = x0_hat
        if self.weights == "exact":
            return lagrange_integrals(rhos, rhos[0], rho_next)
        gaps = [a - b for a, b in itertools.pairwise(rhos)]
        return [h * b for b in comfyui_weights(h, gaps)]


__all__ = ["IPNDMV", "comfyui_weights"]
