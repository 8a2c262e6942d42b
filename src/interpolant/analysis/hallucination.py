"""Hallucinations through mode interpolation and their trajectory-variance detector (seed 11,
Aithal et al. 2024).

Record the data prediction ``x0_hat`` at every step of a run with ``solvers.hooks.Trajectory``
(it reads each step's prediction: no extra model evaluations). The hallucination score of a
sample is the variance, over the last K steps (the smallest t), of its predictions, averaged
over dimensions (the paper's ``filter_type='variance'``):

    Hal(x) = mean_j Var_{k in last K} x0_hat^{(t_k)}_j.

A sample whose trajectory sits near the boundary between two modes late in sampling flips its
prediction between them and scores high; :func:`keep_lowest` keeps the lowest-scoring ones.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import UserError
from ..solvers.hooks import Recording, Trajectory

#: The recorder: ``Trajectory()`` as a hook, ``result.state(hook).x0`` the predictions.
TrajectoryRecorder = Trajectory


def hallucination_score(recording: Recording | list[Tensor], last_k: int = 10) -> Tensor:
    """``mean_j Var_k x0_hat`` over the last ``last_k`` recorded predictions, per sample (B,)."""
    preds = recording.x0 if isinstance(recording, Recording) else list(recording)
    if isinstance(last_k, bool) or not isinstance(last_k, int) or last_k < 2:
        raise UserError(f"last_k must be an int >= 2 (a variance needs two steps), got {last_k!r}")
    if len(preds) < last_k:
        raise UserError(
            f"the trajectory recorded {len(preds)} predictions, fewer than last_k = {last_k}; "
            "record every step (Trajectory(every=1)) or lower last_k"
        )
    stack = torch.stack([p.reshape(p.shape[0], -1) for p in preds[-last_k:]])  # (K, B, D)
    return stack.to(torch.float64).var(dim=0, unbiased=False).mean(-1)


def keep_lowest(scores: Tensor, keep: float | int) -> Tensor:
    """Indices of the lowest-scoring samples: a fraction in (0, 1] or a count."""
    n = scores.shape[0]
    count = round(keep * n) if isinstance(keep, float) else int(keep)
    if not 1 <= count <= n:
        raise UserError(f"keep must select between 1 and {n} samples, got {keep!r}")
    return scores.argsort()[:count]


def auroc(scores: Tensor, positive: Tensor) -> float:
    """Area under the ROC curve of ``scores`` for the boolean labels ``positive``: the
    Mann-Whitney U statistic over n_pos n_neg (average ranks for ties)."""
    from scipy.stats import rankdata

    pos = positive.bool().cpu().numpy()
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise UserError("AUROC needs at least one positive and one negative sample")
    ranks = rankdata(scores.detach().double().cpu().numpy())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def threshold_at_retention(scores: Tensor, negative: Tensor, retain: float = 0.96) -> float:
    """The score threshold that keeps the fraction ``retain`` of the negative (in-support)
    samples: their ``retain`` quantile."""
    if not 0 < retain <= 1:
        raise UserError(f"retain must lie in (0, 1], got {retain}")
    return float(torch.quantile(scores[negative.bool()].double(), retain))


__all__ = [
    "TrajectoryRecorder",
    "auroc",
    "hallucination_score",
    "keep_lowest",
    "threshold_at_retention",
]
