"""Per-sample Brownian paths on [0, 1] in path time, as a function of (seed, sample, t) only.

k-diffusion's SDE samplers draw their noise from ``BrownianTreeNoiseSampler`` (a torchsde
``BrownianTree`` per sample), so that the noise over [t, t'] is the increment of one Brownian
path: refining the grid refines the same path instead of drawing new noise, and a sample
converges to the SDE's solution for its path as the steps shrink. torchsde's tree is not used
here: its values come from torch generators on the tensor's device (so CPU and GPU differ), it
is built over the grid's own [sigma_min, sigma_max] (so the path changes with the grid's range),
and its splits at the query points depend on the order of the queries. This tree is built on the
per-sample counter-based streams of ``interpolant.randomness`` instead:

* W(0) = 0 and W(1) = z_1 (draw 1 of the sample's ``"brownian"`` stream).
* Dyadic midpoints by the Brownian bridge (Levy's construction): for the tree node k (root 1,
  children 2k and 2k + 1) over [a, b] with m = (a + b) / 2,

      W(m) = (W(a) + W(b)) / 2 + sqrt((b - a) / 4) z_{k + 1}      (draw k + 1),

  down to ``depth`` levels (default 30: leaves of width 2^-30 ~ 9.3e-10).
* Inside a leaf [a, b], W is linear between W(a) and W(b), so W is continuous in t (a query a
  rounding error away gives nearly the same value). The missing bridge variance is at most a
  quarter of the leaf width: relative to an increment over dt, below 2.3e-10 / dt.

Cost: a query draws ``depth`` normals per entry (the three queries of a DPM++ SDE step, ~90
times the draws of one ``run.noise``), which is small next to a network on toy and latent
sizes but dominates for large pixel tensors on the CPU (~1 us per value).

Every value is a function of the key of (seed, sample) and t alone: never of the batch, the
other queries, their order or the device. Increments over a partition telescope, so they sum to
the coarse increment (to rounding). ``normal(t0, t1) = (W(t1) - W(t0)) / sqrt(|t1 - t0|)`` is a
standard normal, the form k-diffusion's noise samplers return.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import UserError
from ..randomness import Streams

#: Leaves of width 2^-DEPTH; each query costs up to DEPTH normal draws per sample.
DEPTH = 30
#: The name of the per-sample streams of the tree's draws.
STREAM = "brownian"


class BrownianTree:
    """One Brownian path W_i(t), t in [0, 1], per row of ``streams`` (see the module docstring),
    with values of shape ``shape`` per sample, computed on the CPU (float64) and returned in
    ``dtype`` on ``device``."""

    def __init__(
        self,
        streams: Streams,
        shape: tuple[int, ...],
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
        depth: int = DEPTH,
    ) -> None:
        if not 1 <= depth <= 60:
            raise UserError(f"depth must be in [1, 60], got {depth}")
        self.streams, self.shape, self.depth = streams, tuple(shape), depth
        self.dtype, self.device = dtype, device
        self._memo: dict[float, Tensor] = {}  # W(t) already computed (a pure function of t)

    @classmethod
    def like(cls, streams: Streams, x: Tensor, depth: int = DEPTH) -> BrownianTree:
        """The tree for tensors shaped like ``x`` (one row per sample), on its dtype and device."""
        if x.shape[0] != len(streams):
            raise UserError(f"{len(streams)} random streams for a batch of {x.shape[0]}")
        return cls(streams, tuple(x.shape[1:]), x.dtype, x.device, depth)

    def _normal(self, draw: int) -> Tensor:
        return self.streams.normal(self.shape, dtype=torch.float64, draw=draw)

    def _value64(self, t: float) -> Tensor:
        """W(t) in float64 on the CPU (memoised)."""
        if t not in self._memo:
            self._memo[t] = self._descend(t)
        return self._memo[t]

    def _descend(self, t: float) -> Tensor:
        if not 0.0 <= t <= 1.0:
            raise UserError(f"the Brownian path is defined on [0, 1], got t = {t}")
        w_b = self._normal(1)
        if t == 1.0:
            return w_b
        w_a = torch.zeros_like(w_b)
        if t == 0.0:
            return w_a
        a, b, node = 0.0, 1.0, 1
        for _ in range(self.depth):
            # Brownian bridge at the midpoint of the node's interval.
            m = 0.5 * (a + b)
            w_m = 0.5 * (w_a + w_b) + math.sqrt(0.25 * (b - a)) * self._normal(node + 1)
            if t == m:
                return w_m
            if t < m:
                b, w_b, node = m, w_m, 2 * node
            else:
                a, w_a, node = m, w_m, 2 * node + 1
        # Linear inside the leaf.
        return torch.lerp(w_a, w_b, (t - a) / (b - a))

    def known(self, t: float) -> Tensor | None:
        """W(t) (float64, CPU) if already computed, else None (a solver passes it on to the next
        step's tree with :meth:`remember`, so a grid node is descended once)."""
        return self._memo.get(float(t))

    def remember(self, t: float, w: Tensor | None) -> None:
        """Take W(t) computed by an earlier tree of the same streams (ignored when its rows do
        not match: the batch changed)."""
        if w is not None and w.shape == (len(self.streams), *self.shape):
            self._memo[float(t)] = w

    def value(self, t: float) -> Tensor:
        """W(t) for every row: (rows, *shape)."""
        return self._value64(float(t)).to(device=self.device, dtype=self.dtype)

    def increment(self, t0: float, t1: float) -> Tensor:
        """W(t1) - W(t0) (variance |t1 - t0|)."""
        return (self._value64(float(t1)) - self._value64(float(t0))).to(
            device=self.device, dtype=self.dtype
        )

    def normal(self, t0: float, t1: float) -> Tensor:
        """The standard normal (W(t1) - W(t0)) / sqrt(|t1 - t0|) (t0 != t1); the sign follows
        the direction, so a step from t0 down to t1 and one up from t1 to t0 see -z and z."""
        if t0 == t1:
            raise UserError(f"a Brownian increment needs t0 != t1, got {t0}")
        return self.increment(t0, t1) / math.sqrt(abs(t1 - t0))


__all__ = ["DEPTH", "STREAM", "BrownianTree"]
