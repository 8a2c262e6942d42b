"""Fokker-Planck residuals vanish for exact densities and scores on the library's paths."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from interpolant import Model
from interpolant.analysis import (
    ConservativeScore,
    FokkerPlanck,
    PotentialNet,
    fp_residual,
    log_density_residual,
    score_residual,
    w2_grid,
    w2_samples,
    w2_sliced,
)
from interpolant.data.oracles import GaussianMixture
from interpolant.errors import UserError, WrongTypeError
from interpolant.losses import LOSS_TERMS, LossInputs, Objective, get_terms
from interpolant.paths import VE, Linear, Trig, VPCosine, VPLinear

torch.set_num_threads(1)
PATHS = [VPLinear(), VPCosine(), Linear(), Trig(), VE()]


def gaussian() -> GaussianMixture:
    cov = torch.tensor([[1.0, 0.3, 0.0], [0.3, 0.5, 0.1], [0.0, 0.1, 0.8]], dtype=torch.float64)
    return GaussianMixture(torch.tensor([[0.5, -1.0, 0.2]], dtype=torch.float64), cov[None])


def mixture() -> GaussianMixture:
    g = torch.Generator().manual_seed(0)
    means = 2 * torch.randn(3, 3, generator=g, dtype=torch.float64)
    factors = torch.randn(3, 3, 3, generator=g, dtype=torch.float64) * 0.4
    covs = factors @ factors.mT + 0.05 * torch.eye(3, dtype=torch.float64)
    return GaussianMixture(means, covs, torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64))


@pytest.mark.parametrize("path", PATHS, ids=lambda p: type(p).__name__)
@pytest.mark.parametrize("oracle", [gaussian, mixture])
def test_exact_log_density_and_score_have_zero_residual(path, oracle) -> None:
    gm = oracle()
    g = torch.Generator().manual_seed(1)
    t = torch.rand(16, generator=g, dtype=torch.float64) * 0.9 + 0.05
    x = path.sample_xt(gm.sample(16, g), t, torch.randn(16, 3, generator=g, dtype=torch.float64))
    r_log = log_density_residual(lambda y, s: gm.log_prob(y, s, path), x, t, path)
    r_score = score_residual(lambda y, s: gm.score(y, s, path), x, t, path)
    assert float(r_log.abs().max()) < 1e-5
    assert float(r_score.abs().max()) < 1e-5
    # A wrong score (scaled) is not a solution.
    wrong = score_residual(lambda y, s: 0.8 * gm.score(y, s, path), x, t, path)
    assert float(wrong.abs().max()) > 1e-2


def test_hutchinson_residual_is_unbiased() -> None:
    gm, path = mixture(), VPLinear()
    x = gm.sample(4, torch.Generator().manual_seed(2))
    lp = lambda y, s: gm.log_prob(y, s, path) + 0.1 * y[:, 0] ** 3  # noqa: E731  (not a solution)
    exact = log_density_residual(lp, x, 0.4, path)
    est = log_density_residual(lp, x, 0.4, path, exact=False, n_probes=4000)
    assert torch.allclose(est, exact, atol=0.05 * float(exact.abs().max()) + 1e-3)


def test_potential_model_residual_and_relu_refusal() -> None:
    torch.manual_seed(0)
    path = VPLinear()
    model = Model(ConservativeScore(PotentialNet(2, 16, 2)).double(), path, predicts="score")
    x = torch.randn(5, 2, dtype=torch.float64)
    r = fp_residual(model, x, 0.3, "log-density")
    assert r.shape == (5,) and bool(r.isfinite().all())
    assert fp_residual(model, x, 0.3, "score").shape == (5, 2)
    relu = Model(ConservativeScore(PotentialNet(2, 8, 1, "relu")), path, predicts="score")
    with pytest.raises(UserError, match="ReLU"):
        fp_residual(relu, x.float(), 0.3, "log-density")
    free = Model(lambda y, t: -y, path, predicts="score")
    with pytest.raises(WrongTypeError, match="potential model"):
        fp_residual(free, x, 0.3, "log-density")
    with pytest.raises(UserError, match="0 < t < 1"):
        fp_residual(model, x, 0.0, "score")


def test_fokker_planck_term_adds_the_weighted_residual_and_trains() -> None:
    torch.manual_seed(0)
    path = VPLinear()
    model = Model(ConservativeScore(PotentialNet(2, 16, 2)), path, predicts="score")
    base = Objective(path, target="eps")
    x0 = torch.randn(32, 2)
    term = FokkerPlanck(weight=2.0, points=8)
    reg = Objective(path, target="eps", terms=[term])
    total = reg.loss(model, x0, torch.Generator().manual_seed(5))
    plain = base.loss(model, x0, torch.Generator().manual_seed(5))
    # The term's draws follow the base loss's on the same generator; its points are the batch's
    # own (x0, eps) at a fresh time, and the batch mean is the mean over the 8 points.
    g = torch.Generator().manual_seed(5)
    t = base.sample_time(32, g).float()
    eps = path.noise_like(x0, g)
    u = torch.rand(32, generator=g, dtype=torch.float64)[:8]
    tc = (0.01 + 0.98 * u).float()
    xc = path.sample_xt(x0[:8], tc, eps[:8])
    by_hand = fp_residual(model, xc, tc, "log-density").square().mean()
    assert t.shape == (32,)
    assert torch.allclose(total, plain + 2.0 * by_hand, rtol=1e-5)
    total.backward()
    # Every weight gets a finite gradient (the energy's output bias leaves the score unchanged).
    grads = {n: p.grad for n, p in model.named_parameters() if not n.endswith("4.bias")}
    assert all(g_ is not None and bool(g_.isfinite().all()) for g_ in grads.values())
    assert float(grads["net.energy.mlp.0.weight"].abs().sum()) > 0


def test_fokker_planck_term_of_the_exact_score_is_zero() -> None:
    # The score-form penalty of an exact mixture score vanishes at every collocation point.
    gm, path = mixture(), VPLinear()
    model = gm.model(path)
    x0 = gm.sample(16, torch.Generator().manual_seed(3))
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(4), dtype=x0.dtype)
    t = torch.full((16,), 0.5, dtype=x0.dtype)
    x_t = path.sample_xt(x0, t, eps)
    inputs = LossInputs(
        x0, eps, t, x_t, model(x_t, t), eps, torch.Generator().manual_seed(0), None, model
    )
    penalty = FokkerPlanck(form="score").penalty(inputs)
    assert penalty.shape == (16,) and float(penalty.abs().max()) < 1e-9
    wrong = Model(lambda y, s: 0.8 * gm.score(y, s, path), path, predicts="score")
    assert float(FokkerPlanck(form="score").penalty(replace(inputs, model=wrong)).min()) > 1e-4


def test_fokker_planck_term_by_name_config_and_errors() -> None:
    (term,) = get_terms(["fokker-planck:0.5"])
    assert isinstance(term, FokkerPlanck) and term.weight == 0.5 and "fokker-planck" in LOSS_TERMS
    obj = Objective(VPLinear(), target="eps", terms=[FokkerPlanck(0.1, form="score", points=4)])
    again = Objective.from_config(json.loads(json.dumps(obj.config())))
    assert again.terms == obj.terms
    with pytest.raises(UserError, match="form must be"):
        FokkerPlanck(form="laplace")
    with pytest.raises(UserError, match="t_min < t_max"):
        FokkerPlanck(t_min=0.5, t_max=0.2)
    with pytest.raises(UserError, match="points must be"):
        FokkerPlanck(points=0)
    plain_net = Objective(VPLinear(), target="eps", terms=[FokkerPlanck(form="score")])
    with pytest.raises(WrongTypeError, match=r"interpolant\.Model"):
        plain_net.loss(lambda x, t: x, torch.randn(4, 2), torch.Generator().manual_seed(0))
    free = Model(lambda y, t: -y, VPLinear(), predicts="score")
    with pytest.raises(WrongTypeError, match="potential model"):
        Objective(VPLinear(), target="eps", terms=[FokkerPlanck()]).loss(free, torch.randn(4, 2))


def test_fokker_planck_name_registers_without_importing_analysis() -> None:
    # A config naming the term works in a fresh process that never imported interpolant.analysis.
    code = (
        "import sys; from interpolant.losses import get_terms; "
        "assert 'interpolant.analysis' not in sys.modules; "
        "print(get_terms([{'name': 'fokker-planck', 'weight': 0.2}])[0].weight)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0.2"


def test_fokker_planck_term_through_the_trainer_config(tmp_path) -> None:
    # The trainer builds the objective from its config (the term by name) and trains the potential.
    from interpolant.train import TrainConfig, train

    torch.manual_seed(0)
    path = VPLinear()
    model = Model(ConservativeScore(PotentialNet(2, 16, 2)), path, predicts="score")
    config = TrainConfig(
        run_dir=str(tmp_path),
        steps=3,
        batch_size=16,
        lr=1e-3,
        ema="none",
        device="cpu",
        progress=False,
        predicts="score",
        objective={
            "target": "eps",
            "terms": [{"name": "fokker-planck", "weight": 1.0, "points": 4}],
        },
    )
    before = [p.detach().clone() for p in model.parameters()]
    trainer = train(config, torch.randn(64, 2), model=model)
    assert [t.name for t in trainer.objective.terms] == ["fokker-planck"]
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_w2_on_grid_and_samples() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 2, generator=g, dtype=torch.float64)
    shift = torch.tensor([1.0, 0.0], dtype=torch.float64)
    # A translation by 1: W2 = 1 exactly for the empirical measures.
    assert abs(w2_samples(x, x + shift) - 1.0) < 1e-9
    assert abs(w2_grid(x, x + shift, bins=41, low=-5.0, high=5.0) - 1.0) < 0.03
    assert w2_grid(x, x) < 1e-6  # LP round-off only
    assert abs(w2_sliced(x, x + shift, n_projections=2000) - (0.5**0.5)) < 0.05
