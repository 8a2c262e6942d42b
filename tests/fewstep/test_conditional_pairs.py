"""Class-conditional pairs: the analytic class-conditional teacher, labels stored and hashed with
the pairs, and a reflow student trained with the labels."""

from __future__ import annotations

import pytest
import torch

from interpolant.errors import UserError
from interpolant.fewstep import Reflow, analytic_teacher, load_pairs, make_pairs, teacher_hash
from interpolant.fewstep.recipes import fit, train_config
from interpolant.randomness import normal
from interpolant.solvers import Sampler, sample

HEUN = Sampler("heun", steps=150, grid="uniform")


def _two_classes(n_per: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0 around (-2, 0), class 1 around (+2, 0)."""
    g = torch.Generator().manual_seed(3)
    centre = torch.tensor([[-2.0, 0.0], [2.0, 0.0]])
    labels = torch.arange(2 * n_per) % 2
    return centre[labels] + 0.3 * torch.randn(2 * n_per, 2, generator=g), labels


def test_conditional_analytic_teacher_is_the_posterior_over_its_class():
    data, labels = _two_classes()
    teacher = analytic_teacher(data, chunk=5, labels=labels)  # blocks with one class only
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = torch.tensor([0.2, 0.5, 0.8, 0.95], dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0])
    d = data.double()
    logits = -(x[:, None] - (1 - t)[:, None, None] * d[None]).square().sum(-1) / (
        2 * t[:, None] ** 2
    )
    logits = logits.masked_fill(labels[None] != y[:, None], -torch.inf)
    expected = torch.softmax(logits, dim=1) @ d
    assert torch.allclose(teacher(x, t, class_labels=y).x0, expected, atol=1e-12)
    with pytest.raises(UserError, match="no data points of classes"):
        teacher(x, t, class_labels=torch.tensor([0, 1, 2, 0]))
    with pytest.raises(UserError, match="without labels"):
        analytic_teacher(data)(x, t, class_labels=y)
    # The labels are part of what the hash fingerprints.
    assert teacher_hash(teacher) != teacher_hash(analytic_teacher(data, chunk=5, labels=1 - labels))


def test_conditional_pairs_land_on_their_class_and_keep_their_labels(tmp_path):
    data, labels = _two_classes()
    teacher = analytic_teacher(data, labels=labels)
    pair_labels = torch.arange(40) % 2
    made = make_pairs(
        teacher, 40, HEUN, shape=(2,), directory=tmp_path / "p", chunk=16, labels=pair_labels
    )
    assert torch.equal(made.labels, pair_labels)
    # The exact conditional flow sends each noise draw to a data point of the pair's class.
    dist = torch.cdist(made.x0.double(), data.double())
    nearest = dist.min(dim=1)
    assert nearest.values.max() < 0.02  # on a data point (the ODE is stiff near t = 0)
    assert torch.equal(labels[nearest.indices], pair_labels)
    # The same noise without labels (all points) ends elsewhere for some pairs.
    free = make_pairs(analytic_teacher(data), 40, HEUN, shape=(2,))
    assert torch.equal(free.eps, made.eps) and (free.x0 - made.x0).abs().max() > 1.0
    # Stored and read back; a half-finished directory resumes; other labels are refused.
    back = load_pairs(tmp_path / "p", teacher)
    assert torch.equal(back.labels, pair_labels) and torch.equal(back.x0, made.x0)
    (tmp_path / "p" / "chunk-00002.safetensors").unlink()
    again = make_pairs(
        teacher, 40, HEUN, shape=(2,), directory=tmp_path / "p", chunk=16, labels=pair_labels
    )
    assert torch.equal(again.x0, made.x0)
    with pytest.raises(UserError, match="other settings \\(labels\\)"):
        make_pairs(
            teacher,
            40,
            HEUN,
            shape=(2,),
            directory=tmp_path / "p",
            chunk=16,
            labels=1 - pair_labels,
        )
    with pytest.raises(UserError, match="other settings \\(labels\\)"):
        make_pairs(teacher, 40, HEUN, shape=(2,), directory=tmp_path / "p", chunk=16)
    with pytest.raises(UserError, match="integer tensor"):
        make_pairs(teacher, 40, HEUN, shape=(2,), labels=torch.zeros(39, dtype=torch.int64))


def test_reflow_student_trained_with_labels_samples_each_class(tmp_path):
    data, labels = _two_classes()
    teacher = analytic_teacher(data, labels=labels)
    made = make_pairs(
        teacher,
        512,
        Sampler("heun", steps=40, grid="uniform"),
        shape=(2,),
        labels=torch.arange(512) % 2,
    )
    net = {
        "name": "mlp",
        "dim": 2,
        "width": 64,
        "depth": 2,
        "num_classes": 2,
        "class_dropout_prob": 0.0,
    }
    cfg = train_config(tmp_path / "student", net, 300, batch_size=128, lr=3e-3)
    student = fit(cfg, made.rows(), Reflow(), labels=made.labels)
    eps = normal((2,), 11, range(200), "test")
    y = torch.arange(200) % 2
    with torch.no_grad():
        x = sample(
            student, eps, Sampler("euler", steps=1, grid="uniform"), cond={"class_labels": y}
        ).x
    # Each one-step sample lies on its own class's side (an unconditional student: about half).
    side = (x[:, 0] > 0).long()
    assert (side == y).float().mean() > 0.95
