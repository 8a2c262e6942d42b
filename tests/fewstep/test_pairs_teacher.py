"""Analytic teacher, pairs files, couplings and straightness against exact answers."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from scipy.integrate import quad

from interpolant.data.oracles import GaussianMixture
from interpolant.errors import UserError
from interpolant.fewstep import (
    BetaSchedule,
    PairCoupling,
    analytic_teacher,
    load_pairs,
    make_pairs,
    split_rows,
    straightness,
    teacher_hash,
)
from interpolant.paths import Linear
from interpolant.solvers import Sampler


def test_analytic_teacher_is_the_exact_posterior_mean():
    g = torch.Generator().manual_seed(0)
    data = torch.randn(30, 3, generator=g, dtype=torch.float64)
    model = analytic_teacher(data, chunk=7)  # several log-sum-exp blocks
    x = torch.randn(5, 3, generator=g, dtype=torch.float64)
    t = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.95], dtype=torch.float64)
    logits = -(x[:, None] - (1 - t)[:, None, None] * data[None]).square().sum(-1) / (
        2 * t[:, None] ** 2
    )
    expected = torch.softmax(logits, dim=1) @ data
    assert torch.allclose(model(x, t).x0, expected, atol=1e-12)
    # velocity = (x_t - E[x0 | x_t]) / t on the linear path
    assert torch.allclose(model(x, t).velocity, (x - expected) / t[:, None], atol=1e-10)


def test_analytic_pairs_are_exact_and_land_on_data():
    g = torch.Generator().manual_seed(1)
    data = torch.randn(12, 2, generator=g)
    teacher = analytic_teacher(data)
    coarse = make_pairs(teacher, 48, Sampler("heun", steps=150, grid="uniform"), shape=(2,))
    fine = make_pairs(teacher, 48, Sampler("heun", steps=600, grid="uniform"), shape=(2,))
    assert torch.equal(coarse.eps, fine.eps)
    assert (coarse.x0 - fine.x0).abs().max() < 1e-5  # converged ODE solution
    nearest = torch.cdist(fine.x0.double(), data.double()).min(dim=1).values
    assert nearest.max() < 1e-5  # the empirical flow memorises: endpoints are data points


def test_straightness_of_the_exact_gaussian_flow_matches_the_closed_form():
    m, s = 0.5, 0.3
    gauss = GaussianMixture(torch.tensor([[m]], dtype=torch.float64), torch.tensor([[[s * s]]]))
    noise = torch.randn(4000, 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def gap(t: float) -> float:  # (1 - s - sigma_t'), sigma_t = sqrt((1-t)^2 s^2 + t^2)
        return (1 - s - (t - (1 - t) * s * s) / math.sqrt((1 - t) ** 2 * s * s + t * t)) ** 2

    exact = quad(gap, 0, 1)[0] * float(noise.square().mean())
    measured = straightness(gauss.model(Linear()), noise, steps=400)
    assert measured == pytest.approx(exact, rel=0.03)
    # one data point: the flow is a straight line to it
    one = analytic_teacher(torch.tensor([[1.0, -2.0]], dtype=torch.float64))
    assert straightness(one, noise.repeat(1, 2)[:200], steps=50) < 1e-12


def test_pairs_resume_and_refuse_another_teacher(tmp_path):
    data = torch.randn(10, 2, generator=torch.Generator().manual_seed(3))
    teacher = analytic_teacher(data)
    spec = Sampler("euler", steps=20, grid="uniform")
    first = make_pairs(teacher, 50, spec, shape=(2,), directory=tmp_path, chunk=16, batch_size=7)
    chunks = sorted(tmp_path.glob("chunk-*.safetensors"))
    assert len(chunks) == 4
    chunks[-1].unlink()  # an interrupted run: the last chunk never got its final name
    chunks[1].unlink()
    again = make_pairs(teacher, 50, spec, shape=(2,), directory=tmp_path, chunk=16, batch_size=50)
    assert torch.equal(first.x0, again.x0) and torch.equal(first.eps, again.eps)
    assert torch.equal(load_pairs(tmp_path, teacher).x0, first.x0)
    other = analytic_teacher(data + 1)
    assert teacher_hash(other) != teacher_hash(teacher)
    with pytest.raises(UserError, match="another teacher"):
        load_pairs(tmp_path, other)
    with pytest.raises(UserError, match="another teacher"):
        make_pairs(other, 50, spec, shape=(2,), directory=tmp_path, chunk=16)
    with pytest.raises(UserError, match="other settings"):
        make_pairs(teacher, 50, spec, shape=(2,), directory=tmp_path, chunk=16, seed=1)
    with pytest.raises(UserError, match="stacked"):
        split_rows(torch.zeros(4, 3))


def test_beta_schedules_and_annealed_coupling():
    for kind in ("linear", "exp", "cos"):
        sched = BetaSchedule(kind, steps=100)
        assert sched(0) == 1.0
        values = [sched(k) for k in range(0, 201, 10)]
        assert all(a >= b for a, b in itertools.pairwise(values))
    assert BetaSchedule("linear", 100)(50) == 0.5 and BetaSchedule("linear", 100)(150) == 0.0
    assert BetaSchedule("cos", 100)(50) == pytest.approx(0.5)
    assert BetaSchedule("exp", 100)(100) == pytest.approx(math.exp(-1))
    # eps = sqrt(1 - b^2) z + b xi stays N(0, 1) with corr(eps, z) = sqrt(1 - b^2)
    g = torch.Generator().manual_seed(4)
    z = torch.randn(200_000, 1, generator=g, dtype=torch.float64)
    coupling = PairCoupling("annealed", BetaSchedule("linear", 100))
    _, eps = coupling.couple(torch.zeros_like(z), z, step=40, generator=g)  # beta = 0.6
    assert float(eps.var()) == pytest.approx(1.0, abs=0.01)
    assert float((eps * z).mean()) == pytest.approx(0.8, abs=0.01)
    _, same = PairCoupling("paired").couple(z, z, step=0)
    assert torch.equal(same, z)
    x0 = torch.arange(6.0).view(1, 1, 2, 3).repeat(64, 1, 1, 1)
    flipped, noise = PairCoupling("paired", h_flip=True).couple(x0, x0.clone(), 0, g)
    assert torch.equal(flipped, noise)  # data and noise flipped together
    n_flipped = int((flipped[:, 0, 0, 0] == 2).sum())
    assert 10 < n_flipped < 54 and torch.equal(flipped.flip(-1)[flipped[:, 0, 0, 0] == 2][0], x0[0])
    with pytest.raises(UserError):
        PairCoupling("annealed")
