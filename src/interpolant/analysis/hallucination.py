"""Hallucinations through mode interpolation and their trajectory-variance detector (seed 11,
Aithal et al. 2024).

Record the data prediction ``x0_hat`` at every step of a run with ``solvers.hooks.Trajectory``
(it reads each step's prediction: no extra model evaluations). The hallucination score of a
sample is the variance, over the last K steps (the smallest t), of its predictions, averaged
over dimensions (the paper's ``filter_type='variance'``):

    Hal(x) = mean_j Var_{k in last K} x0_hat^{(t_k)}_j.

A sample whose trajectory sits near the boundary between two modes late in sampling flips its
prediction between them and scores high; :func:`keep_lowest` keeps the lowest-scoring ones.

:func:`recursive_training` is the paper's model-collapse experiment: generation g + 1 is trained
on n samples of generation g, either a plain subsample ("unfiltered") or the n lowest-scoring of
``oversample * n`` draws ("filtered", the paper's over-generate-and-keep); it records the
fraction of hallucinated draws of every generation for both arms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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


#: The two arms of :func:`recursive_training`; generation 0 (trained on the data) is shared.
ARMS = ("unfiltered", "filtered")


@dataclass(frozen=True)
class Generation:
    """One generation of :func:`recursive_training`: its model's draws, their hallucination
    scores and labels, and the rows kept to train the next generation."""

    index: int
    arm: str  # "unfiltered", "filtered", or "shared" for generation 0
    samples: Tensor  # (oversample * n, ...)
    scores: Tensor  # (oversample * n,)
    hallucinated: Tensor  # (oversample * n,) bool
    kept: Tensor  # indices into samples: the next generation's training data (gen 0: unfiltered)

    @property
    def count(self) -> int:
        """Hallucinated draws."""
        return int(self.hallucinated.sum())

    @property
    def fraction(self) -> float:
        """Fraction of hallucinated draws."""
        return self.count / self.hallucinated.numel()

    @property
    def standard_error(self) -> float:
        """Binomial standard error of :attr:`fraction`."""
        f, n = self.fraction, self.hallucinated.numel()
        return (f * (1 - f) / n) ** 0.5


#: train(data, generation, arm) -> a model; draw(model, count, generation, arm) -> (x, scores).
TrainFn = Callable[[Tensor, int, str], Any]
DrawFn = Callable[[Any, int, int, str], tuple[Tensor, Tensor]]


def recursive_training(
    train: TrainFn,
    draw: DrawFn,
    data: Tensor,
    generations: int,
    hallucinated: Callable[[Tensor], Tensor],
    oversample: int = 5,
    progress: bool = False,
) -> dict[str, list[Generation]]:
    """Recursive training with and without the variance filter (seed 11, Sec. 6).

    Generation 0 is ``train(data, 0, "shared")``; it draws ``oversample * n`` samples with
    ``draw`` (n = ``len(data)``), which returns them with their hallucination scores (e.g. from
    :func:`hallucination_score` of a :data:`TrajectoryRecorder`). For each arm, generation
    g = 1..``generations`` is trained on n of generation g - 1's draws: the first n
    ("unfiltered": the draws are independent, so that is a random subsample) or the n
    lowest-scoring (``keep_lowest``, "filtered"); it then draws as generation 0 did.
    ``hallucinated(x)`` labels draws (bool per row). Returns ``{arm: [generation 0, ..., G]}``,
    generation 0 the same object in both lists.
    """
    n = data.shape[0] if isinstance(data, Tensor) and data.ndim >= 1 else 0
    if n < 1:
        raise UserError("data must be a tensor of at least one row")
    if isinstance(generations, bool) or not isinstance(generations, int) or generations < 1:
        raise UserError(f"generations must be an int >= 1, got {generations!r}")
    if isinstance(oversample, bool) or not isinstance(oversample, int) or oversample < 1:
        raise UserError(f"oversample must be an int >= 1, got {oversample!r}")
    from tqdm import tqdm

    bar = tqdm(total=1 + 2 * generations, desc="recursive training", disable=not progress)

    def generation(rows: Tensor, index: int, arm: str) -> Generation:
        model = train(rows, index, arm)
        x, scores = draw(model, oversample * n, index, arm)
        if x.shape[0] != oversample * n or scores.shape != (oversample * n,):
            raise UserError(
                f"draw must return {oversample * n} samples and as many scores, got "
                f"{tuple(x.shape)} and {tuple(scores.shape)}"
            )
        bad = hallucinated(x).bool().reshape(-1)
        kept = keep_lowest(scores, n) if arm == "filtered" else torch.arange(n)
        bar.update()
        return Generation(index, arm, x, scores, bad, kept)

    first = generation(data, 0, "shared")
    out: dict[str, list[Generation]] = {}
    for arm in ARMS:
        chain = [first]
        kept = first.kept if arm == "unfiltered" else keep_lowest(first.scores, n)
        for g in range(1, generations + 1):
            chain.append(generation(chain[-1].samples[kept], g, arm))
            kept = chain[-1].kept
        out[arm] = chain
    bar.close()
    return out


__all__ = [
    "ARMS",
    "Generation",
    "TrajectoryRecorder",
    "auroc",
    "hallucination_score",
    "keep_lowest",
    "recursive_training",
    "threshold_at_retention",
]
