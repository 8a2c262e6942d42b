"""Data order and per-step seeds that depend only on (seed, step): resumable by construction.

The sample stream is the concatenation of per-epoch permutations ``perm(seed, epoch)`` of the
``n`` examples; update ``step`` takes positions ``[step B, (step + 1) B)`` of it (global batch B),
and rank ``r`` of ``W`` takes the contiguous slice ``[r B / W, (r + 1) B / W)`` of those. So the
ranks' slices are disjoint, their union is the global batch, and 2 ranks x B/2 read exactly what
1 rank x B reads. Nothing is stateful: resuming at ``step`` needs only ``step``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import UserError
from ..randomness import derive_seed


def step_seed(stream: str, seed: int, step: int, index: int) -> int:
    """The seed of item ``index`` (a noise block, a rank) of update ``step``: two levels of
    :func:`~interpolant.randomness.derive_seed`, so it depends on (seed, step, index) only."""
    return derive_seed(stream, derive_seed("train-step", seed, step), index)


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh generator on ``device`` seeded with ``seed``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


class StepSampler:
    """Indices of the examples that update ``step`` feeds to each rank."""

    def __init__(self, n: int, batch_size: int, seed: int = 0):
        if n < 1:
            raise UserError(f"the data set is empty (n = {n})")
        if batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {batch_size}")
        self.n, self.batch_size, self.seed = int(n), int(batch_size), int(seed)
        self._cache: dict[int, Tensor] = {}

    def permutation(self, epoch: int) -> Tensor:
        """The order of the examples in ``epoch`` (a pure function of (seed, epoch))."""
        perm = self._cache.get(epoch)
        if perm is None:
            gen = generator(derive_seed("data-order", self.seed, epoch))
            perm = torch.randperm(self.n, generator=gen)
            self._cache = {epoch: perm, **{e: p for e, p in self._cache.items() if e == epoch - 1}}
        return perm

    def global_indices(self, step: int) -> Tensor:
        """The ``batch_size`` example indices of update ``step`` (all ranks together)."""
        if step < 0:
            raise UserError(f"step must be >= 0, got {step}")
        start = step * self.batch_size
        epoch, offset = divmod(start, self.n)
        if offset + self.batch_size <= self.n:  # within one epoch: a slice of its permutation
            return self.permutation(epoch)[offset : offset + self.batch_size].clone()
        position = start + torch.arange(self.batch_size)
        epochs, offsets = position // self.n, position % self.n
        out = torch.empty(self.batch_size, dtype=torch.long)
        for epoch in torch.unique(epochs).tolist():
            mask = epochs == epoch
            out[mask] = self.permutation(int(epoch))[offsets[mask]]
        return out

    def rank_indices(self, step: int, rank: int, world_size: int) -> Tensor:
        """Rank ``rank``'s contiguous slice of update ``step``'s global batch."""
        if not 0 <= rank < world_size or self.batch_size % world_size:
            raise UserError(
                f"rank {rank} of {world_size} cannot split a global batch of {self.batch_size}"
            )
        per_rank = self.batch_size // world_size
        return self.global_indices(step)[rank * per_rank : (rank + 1) * per_rank]
