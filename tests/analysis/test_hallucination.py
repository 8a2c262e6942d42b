"""The trajectory-variance hallucination score, the filter and AUROC against closed forms."""

from __future__ import annotations

import pytest
import torch

from interpolant.analysis import (
    TrajectoryRecorder,
    auroc,
    hallucination_score,
    keep_lowest,
    recursive_training,
    threshold_at_retention,
)
from interpolant.analysis.hallucination import ARMS
from interpolant.data.oracles import GaussianMixture
from interpolant.errors import UserError
from interpolant.paths import VPLinear
from interpolant.solvers import Sampler, sample

torch.set_num_threads(1)


def test_score_is_the_variance_of_the_last_predictions() -> None:
    steady = [torch.tensor([[1.0, 2.0]]) for _ in range(5)]
    flipping = [torch.tensor([[(-1.0) ** k, 0.0]]) for k in range(5)]
    preds = [torch.cat([a, b]) for a, b in zip(steady, flipping)]
    score = hallucination_score(preds, last_k=4)
    # Var of (-1, 1, -1, 1) is 1 (population variance), averaged over 2 dims: 0.5.
    assert torch.allclose(score, torch.tensor([0.0, 0.5], dtype=torch.float64))
    with pytest.raises(UserError, match="fewer than last_k"):
        hallucination_score(preds, last_k=6)
    assert keep_lowest(score, 1).tolist() == [0]


def test_recorder_costs_no_model_evaluations() -> None:
    gm = GaussianMixture(torch.tensor([[1.0], [2.0], [3.0]]), 0.05**2 * torch.ones(3, 1, 1))
    model = gm.model(VPLinear())
    noise = torch.randn(64, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    spec = Sampler("ddim", steps=30)
    hook = TrajectoryRecorder()
    with_hook = sample(model, noise, spec, hooks=[hook])
    plain = sample(model, noise, spec)
    assert with_hook.nfe == plain.nfe == 30
    assert torch.equal(with_hook.x, plain.x)
    score = hallucination_score(with_hook.state(hook), last_k=5)
    assert score.shape == (64,) and bool((score >= 0).all())


def test_auroc_and_threshold() -> None:
    scores = torch.tensor([0.1, 0.2, 0.3, 0.9, 0.8, 0.25])
    labels = torch.tensor([False, False, False, True, True, True])
    # Positives (0.9, 0.8, 0.25) beat negatives in 3 + 3 + 2 of 9 pairs.
    assert auroc(scores, labels) == pytest.approx(8 / 9)
    thr = threshold_at_retention(scores, ~labels, retain=1.0)
    assert thr == pytest.approx(0.3)


def test_recursive_training_arms_against_their_closed_form() -> None:
    # A "model" is its training rows; it draws `oversample` copies of them with the first h draws
    # replaced by a between-mode value 1.5 (new hallucinations), scored by a perfect detector.
    # Unfiltered: generation 0 has h of 5n hallucinated, later ones train on rows holding those h,
    # so every copy carries them: h / n. Filtered: the kept rows are clean, so h / (5n) throughout.
    n, h, oversample = 10, 3, 5
    seen: list[tuple[int, str, torch.Tensor]] = []

    def train(rows, generation, arm):
        seen.append((generation, arm, rows.clone()))
        return rows

    def draw(model, count, generation, arm):
        x = model.repeat(oversample, 1)
        x[:h] = 1.5
        return x, (x[:, 0] == 1.5).double()

    chains = recursive_training(
        train, draw, torch.zeros(n, 1), 3, lambda x: x[:, 0] == 1.5, oversample
    )
    assert set(chains) == set(ARMS) and chains["unfiltered"][0] is chains["filtered"][0]
    assert [g.index for g in chains["filtered"]] == [0, 1, 2, 3]
    assert [g.fraction for g in chains["unfiltered"]] == [h / (5 * n)] + [h / n] * 3
    assert [g.fraction for g in chains["filtered"]] == [h / (5 * n)] * 4
    # One shared generation 0, then three per arm; the filtered arm trains on clean rows only.
    assert [(g, a) for g, a, _ in seen] == [(0, "shared")] + [
        (k, arm) for arm in ARMS for k in (1, 2, 3)
    ]
    assert all(
        int((rows == 1.5).sum()) == (h if arm == "unfiltered" else 0) for _, arm, rows in seen[1:]
    )
    first = chains["unfiltered"][0]
    assert first.count == h and first.standard_error == pytest.approx(
        (h / 50 * (1 - h / 50) / 50) ** 0.5
    )
    with pytest.raises(UserError, match="generations"):
        recursive_training(train, draw, torch.zeros(n, 1), 0, lambda x: x[:, 0] > 1)
    with pytest.raises(UserError, match="draw must return"):
        recursive_training(
            train, lambda m, c, g, a: (m, m[:, 0]), torch.zeros(n, 1), 1, lambda x: x[:, 0] > 1
        )
