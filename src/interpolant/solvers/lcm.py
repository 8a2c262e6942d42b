"""LCM's multistep sampler (diffusers ``LCMScheduler``, ComfyUI ``lcm``): multistep consistency
sampling (Song et al. 2023, "Consistency models", Alg. 1; Luo et al. 2023, "Latent consistency
models", Alg. 1) as a stateless step.

At each node the model's data prediction x0 is taken as the answer, and the next node starts
from it with fresh noise: x' = alpha' x0 + sigma' z (the path's own forward draw), the final step
returns x0. This is Euler ancestral with all of the noise fresh (s_down = 0, s_up = s'). The
consistency parametrisation x0 = c_skip(t) x + c_out(t) F(x, t) (LCM's boundary condition,
which diffusers' scheduler applies) belongs to the model: wrap the network so that it predicts
that x0. ``fewstep.consistency.Renoise`` is the same move as a step hook.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..configurable import number, option
from ..predictions import Prediction
from .base import Node, Run, Solver, State, register


@register
@dataclass(frozen=True)
class LCM(Solver):
    """x' = alpha' x0 + sigma' s_noise z (x0 at the final step), one evaluation per step."""

    name: ClassVar[str] = "lcm"
    s_noise: float = option(1.0, help="scale of the fresh noise", check=number(0))

    @property
    def stochastic(self) -> bool:
        return self.s_noise > 0

    def step(self, state: State, pred: Prediction, now: Node, nxt: Node, run: Run) -> State:
        x0 = pred.x0
        if nxt.sigma == 0.0 or self.s_noise == 0.0:
            return state.replace(x=nxt.alpha * x0)
        # Renoise the data prediction to the next level.
        return state.replace(x=nxt.alpha * x0 + (self.s_noise * nxt.sigma) * run.noise(x0))


__all__ = ["LCM"]
