"""Reflow, SlimFlow distillation, consistency, MeanFlow and shortcut objectives at their exact
minimisers (Gaussian data, closed forms), and reflow through the stock trainer."""

from __future__ import annotations

import pytest
import torch

from interpolant.data.oracles import GaussianMixture
from interpolant.errors import UserError
from interpolant.fewstep import (
    FlowGuidedDistillation,
    PairCoupling,
    Reflow,
    pair_rows,
    straightness,
)
from interpolant.fewstep.consistency import (
    ConsistencyDistillation,
    consistency_sample,
    ict_levels,
    karras_levels,
    lognormal_index_probs,
)
from interpolant.fewstep.meanflow import MeanFlow, Shortcut, interval_model, interval_sample
from interpolant.models import build_model
from interpolant.paths import VP, Linear
from interpolant.predictions import Model
from interpolant.train import TrainConfig, train

from .gaussian import OneStepMap, average_velocity_model, flow

M, S = 0.5, 0.3


def exact_pairs(n: int, seed: int = 0, dim: int = 1) -> torch.Tensor:
    eps = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return pair_rows(M + S * eps, eps)  # the 1-RF flow map of N(m, s^2) sends eps to m + s eps


def _config(tmp_path, steps: int, **kw) -> TrainConfig:
    base = dict(
        model={"name": "mlp", "dim": 1, "width": 32, "depth": 2},
        path={"name": "linear"},
        predicts="velocity",
        run_dir=str(tmp_path),
        steps=steps,
        batch_size=128,
        lr=3e-3,
        device="cpu",
        log_every=steps,
        checkpoint_every=steps,
        progress=False,
        ema="none",
    )
    base.update(kw)
    return TrainConfig(**base)


def test_reflow_on_exact_gaussian_pairs_lowers_straightness(tmp_path):
    rows = exact_pairs(4096).float()
    trainer = train(_config(tmp_path / "rf", 400), rows, objective=Reflow())
    student = trainer.module.eval().requires_grad_(False)
    noise = torch.randn(2000, 1, generator=torch.Generator().manual_seed(9))
    teacher = GaussianMixture(torch.tensor([[M]]), torch.tensor([[[S * S]]])).model(Linear())
    before = straightness(teacher, noise.double(), steps=100)
    after = straightness(student, noise, steps=100)
    assert before > 0.1 and after < 0.2 * before
    # ... and its one-step sample is close to the exact map eps -> m + s eps
    one = student(noise, torch.ones(2000)).velocity
    assert float((noise - one - (M + S * noise)).abs().mean()) < 0.05


def test_annealed_reflow_resumes_its_schedule_exactly(tmp_path):
    rows = exact_pairs(512).float()
    coupling = PairCoupling(
        "annealed", beta=__import__("interpolant").fewstep.BetaSchedule("cos", 6)
    )
    whole = train(_config(tmp_path / "a", 8, checkpoint_every=4), rows, objective=Reflow(coupling))
    part = Reflow(PairCoupling("annealed", beta=coupling.beta))
    train(_config(tmp_path / "b", 4, checkpoint_every=4), rows, objective=part)
    resumed = Reflow(PairCoupling("annealed", beta=coupling.beta))
    done = train(_config(tmp_path / "b", 8, checkpoint_every=4), rows, objective=resumed)
    assert resumed.step == 8
    for a, b in zip(whole.module.parameters(), done.module.parameters(), strict=True):
        assert torch.equal(a, b)


def test_flow_guided_distillation_vanishes_at_the_exact_one_step_map():
    rows = exact_pairs(256, dim=2)
    student = Model(OneStepMap(M, S), Linear(), predicts="velocity")
    teacher = Model(OneStepMap(M, S), Linear(), predicts="velocity").requires_grad_(False)
    objective = FlowGuidedDistillation(teacher, guidance=1.0)
    g = torch.Generator().manual_seed(0)
    assert float(objective.loss(student, rows, g)) < 1e-20
    with torch.no_grad():
        student.net.bias.fill_(0.1)
    assert float(objective.loss(student, rows, g)) > 1e-4
    naive = FlowGuidedDistillation(None, guidance=0.0, distance="pseudo-huber")
    assert float(naive.loss(student, rows, g)) > 0
    vp_student = Model(build_model("mlp", dim=2, width=8, depth=1), VP(), predicts="eps")
    with pytest.raises(UserError, match="linear"):
        Reflow().loss(vp_student, rows.float())
    with pytest.raises(UserError, match="LPIPS"):
        Reflow(distance="lpips")


def test_ict_discretisation_and_noise_curriculum():
    assert ict_levels(0, 1000) == 11 and ict_levels(10**6, 1000) == 1281
    k_prime = 1000 // 8  # floor(K / (log2(128) + 1))
    assert ict_levels(k_prime, 1000) == 21 and ict_levels(2 * k_prime - 1, 1000) == 21
    levels = karras_levels(11)
    assert levels[0] == pytest.approx(0.002) and levels[-1] == pytest.approx(80.0)
    probs = lognormal_index_probs(karras_levels(1281))
    assert probs.sum() == pytest.approx(1.0)
    # the mass below sigma = exp(P_mean) is about one half of the log-normal's
    lv = karras_levels(1281)
    below = probs[lv[1:] <= torch.exp(torch.tensor(-1.1, dtype=torch.float64))].sum()
    assert float(below) == pytest.approx(0.5, abs=0.02)


class _FlowMapNet(torch.nn.Module):
    """The exact consistency function of N(m, s^2) on the linear path: f(x, t) = flow to 0."""

    def __init__(self):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, x, t):
        shape = (-1, *([1] * (x.ndim - 1)))
        drift = self.bias * t.double().view(shape) * torch.ones_like(x.double())
        return (flow(x, t, torch.zeros_like(t), M, S) + drift).to(x.dtype)


def test_consistency_distillation_vanishes_at_the_exact_consistency_function():
    gauss = GaussianMixture(torch.tensor([[M]], dtype=torch.float64), torch.tensor([[[S * S]]]))
    teacher = gauss.model(Linear())
    student = Model(_FlowMapNet(), Linear(), predicts="x0")
    x0 = gauss.sample(512, torch.Generator().manual_seed(1))
    objective = ConsistencyDistillation(teacher, levels=18, solver="heun", distance="l2")
    losses = [
        float(objective.loss(student, x0, torch.Generator().manual_seed(k))) for k in range(6)
    ]
    assert max(losses) < 1e-6
    with torch.no_grad():
        student.net.bias.fill_(0.05)
    perturbed = [
        float(objective.loss(student, x0, torch.Generator().manual_seed(k))) for k in range(6)
    ]
    # the same level and noise per seed: the exact f is 100x better at every level
    assert all(p > 100 * e for p, e in zip(perturbed, losses, strict=True))
    # multistep consistency sampling with the exact f gives exact samples at 1 and 3 steps
    with torch.no_grad():
        student.net.bias.zero_()
    noise = torch.randn(20000, 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for grid in ([1.0, 0.0], [1.0, 0.6, 0.2, 0.0]):
        x = consistency_sample(student, noise, grid, seed=3)
        assert float(x.mean()) == pytest.approx(M, abs=0.01)
        assert float(x.std()) == pytest.approx(S, abs=0.01)


def _grad_at(objective, model, x0, bias: float, seed: int = 0) -> float:
    with torch.no_grad():
        model.net.bias.fill_(bias)
    model.net.bias.grad = None
    objective.loss(model, x0, torch.Generator().manual_seed(seed)).backward()
    return float(model.net.bias.grad)


def test_meanflow_gradient_vanishes_at_the_exact_average_velocity():
    model = average_velocity_model(M, S)
    x0 = M + S * torch.randn(
        40000, 1, generator=torch.Generator().manual_seed(5), dtype=torch.float64
    )
    objective = MeanFlow(power=0.0)  # plain squared error: the exact u is its minimiser
    at_exact = _grad_at(objective, model, x0, 0.0)
    away = _grad_at(objective, model, x0, 0.3)
    assert away > 0.05 and abs(at_exact) < 0.1 * away
    # one-step and two-step samples of the exact average velocity are exact maps
    with torch.no_grad():
        model.net.bias.zero_()
    eps = torch.randn(100, 1, dtype=torch.float64)
    for steps in (1, 2):
        x, nfe = interval_sample(model, eps, steps)
        assert nfe == steps and torch.allclose(x, M + S * eps, atol=1e-9)


def test_shortcut_self_consistency_is_exact_for_the_average_velocity():
    model = average_velocity_model(M, S)
    x0 = M + S * torch.randn(
        40000, 1, generator=torch.Generator().manual_seed(6), dtype=torch.float64
    )
    objective = Shortcut(log2_steps=5, consistency_fraction=0.25)
    per = objective.per_sample_loss(model, x0, torch.Generator().manual_seed(0))
    assert float(per[:10000].max()) < 1e-20  # s(x, t, 2d) = mean of two d-steps, exactly
    at_exact = _grad_at(objective, model, x0, 0.0)
    away = _grad_at(objective, model, x0, 0.3)
    assert away > 0.05 and abs(at_exact) < 0.1 * away


def test_trained_meanflow_and_shortcut_models_run_through_the_trainer(tmp_path):
    x0 = (M + S * torch.randn(1024, 2, generator=torch.Generator().manual_seed(7))).float()
    for name, objective in (("mf", MeanFlow()), ("sc", Shortcut(log2_steps=3))):
        model = interval_model(2, width=32, depth=2)
        cfg = _config(tmp_path / name, 30, model={})
        trainer = train(cfg, x0, model=model, objective=objective)
        x, _ = interval_sample(trainer.module.eval(), torch.randn(8, 2), 1)
        assert torch.isfinite(x).all()
