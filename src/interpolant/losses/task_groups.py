"""Grouping diffusion times into tasks by their log-SNR (ANT, Go et al. 2023).

ANT treats intervals of noise levels as tasks and groups the timesteps by *interval clustering*
of their SNR (the official ``interval_clustering.py``: an optimal partition of the sorted
timesteps into k contiguous intervals, found by dynamic programming). Here the clustering is
1-D k-means on log-SNR, solved exactly: in one dimension an optimal k-means partition consists
of contiguous runs of the sorted values, so the dynamic program over split points

    D[j, i] = min_{l < i} D[j - 1, l] + cost(l + 1 .. i),   cost = sum (x - mean)^2

finds the global optimum (no restarts, no seed). ANT's own cost is the absolute deviation from
each interval's middle element; k-means' squared deviation from the mean is the brief's choice,
and both give contiguous groups. Since log-SNR is monotone in t on every Gaussian path, groups of
sorted log-SNR are contiguous intervals of t: :func:`snr_task_edges` returns their t boundaries.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..errors import UserError


def kmeans_1d(values: Tensor, k: int) -> tuple[Tensor, Tensor, float]:
    """Exact k-means of 1-D ``values`` (n,): (labels (n,), centres (k,), within-cluster sum of
    squares). Labels number the clusters in increasing order of their values; every cluster is
    a contiguous run of the sorted values. O(k n^2) time, O(n^2) memory (n up to a few
    thousand)."""
    x = torch.as_tensor(values, dtype=torch.float64).flatten()
    n = x.numel()
    if not 1 <= int(k) <= n:
        raise UserError(f"k-means needs 1 <= k <= the number of values ({n}), got k={k}")
    if not bool(torch.isfinite(x).all()):
        raise UserError("k-means values must be finite (log-SNR at t = 0 or 1 is infinite)")
    order = torch.argsort(x, stable=True)
    xs = x[order]
    zero = torch.zeros(1, dtype=torch.float64)
    s1, s2 = torch.cat([zero, xs.cumsum(0)]), torch.cat([zero, (xs * xs).cumsum(0)])
    a, b = torch.arange(n)[:, None], torch.arange(n)[None, :]  # run a..b of the sorted values
    size = (b - a + 1).clamp(min=1).double()
    cost = (s2[b + 1] - s2[a]) - (s1[b + 1] - s1[a]) ** 2 / size
    cost = torch.where(b >= a, cost.clamp(min=0), torch.full_like(cost, torch.inf))
    best = cost[0].clone()  # one cluster over 0..i
    splits = []
    for _ in range(1, int(k)):
        # candidate[l, i]: the best j clusters over 0..l, then the run l+1..i.
        candidate = best[:-1, None] + cost[1:, :]
        best_value, arg = candidate.min(dim=0)
        best = torch.cat([torch.full((1,), torch.inf, dtype=torch.float64), best_value[1:]])
        splits.append(arg)
    # Backtrack the starts of the clusters from the last value.
    starts, end = [], n - 1
    for arg in reversed(splits):
        start = int(arg[end]) + 1
        starts.append(start)
        end = start - 1
    bounds = [0, *reversed(starts), n]
    sorted_labels = torch.empty(n, dtype=torch.long)
    centres = torch.empty(int(k), dtype=torch.float64)
    for g in range(int(k)):
        sorted_labels[bounds[g] : bounds[g + 1]] = g
        centres[g] = xs[bounds[g] : bounds[g + 1]].mean()
    labels = torch.empty(n, dtype=torch.long)
    labels[order] = sorted_labels
    return labels, centres, float(best[n - 1])


def snr_task_edges(path: Any, groups: int, grid: int = 1000) -> Tensor:
    """The t boundaries (groups - 1,) of ``groups`` tasks clustered by log-SNR: exact 1-D
    k-means of the path's log-SNR at the ``grid`` bin centres t = (i + 1/2) / grid (ANT's
    timesteps); a boundary lies between the bins of adjacent groups. Task g is
    ``edges[g - 1] <= t < edges[g]``."""
    if groups < 1 or grid < groups:
        raise UserError(f"snr grouping needs 1 <= groups <= grid ({grid}), got {groups}")
    t = (torch.arange(grid, dtype=torch.float64) + 0.5) / grid
    labels, _, _ = kmeans_1d(path.logsnr(t).double(), groups)
    # log-SNR decreases with t, so the cluster numbers (by increasing log-SNR) run backwards.
    by_t = groups - 1 - labels
    if bool((by_t.diff() < 0).any()):
        raise UserError(
            f"the path's log-SNR is not monotone in t ({type(path).__name__}): its SNR groups "
            "are not intervals of t; use grouping=uniform"
        )
    first = torch.nonzero(by_t.diff() > 0).flatten() + 1  # first bin of groups 1..G-1
    return first.double() / grid


def task_of_edges(t: Tensor, edges: Tensor) -> Tensor:
    """The task of each t: the number of boundaries at or below it."""
    return torch.searchsorted(edges.to(t.device), t.double().clamp(0, 1), right=True)


__all__ = ["kmeans_1d", "snr_task_edges", "task_of_edges"]
