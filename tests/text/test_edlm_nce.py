"""EDLM-NCE: the loss against its closed form, the exact NCE optimum on an enumerable chain, a
short training run through the trainer, and importance sampling with the trained energy."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import Tensor

from interpolant.paths.discrete import DiscretePath
from interpolant.text.edlm import AREnergy, edlm_sample
from interpolant.text.edlm_nce import (
    EnergyTransformer,
    NCEEnergy,
    NCEObjective,
    nce_loss,
    train_nce_energy,
)
from interpolant.text.markov import MarkovLanguage, all_sequences
from interpolant.text.samplers import masked_canvas

V, L = 3, 4
LANG = MarkovLanguage.random(V, L, order=1, concentration=0.3, seed=2)
ALL = all_sequences(V, L)
PROBS = LANG.log_prob(ALL).exp()
LOG4 = 2 * math.log(2.0)


def exact_energy(x0: Tensor, x_t: Tensor, t: Tensor | None = None) -> Tensor:
    """The NCE optimum E* = log q(x0 | x_t) - log p(x0 | x_t), with p(x0 | x_t) = p(x0) / Z(x_t)
    and Z(x_t) the probability of x_t's visible tokens, by enumeration of all 81 sequences."""
    consistent = ((x_t[:, None] == V) | (x_t[:, None] == ALL[None])).all(-1)
    log_z = (consistent * PROBS).sum(1).log()
    q = LANG.posterior(x_t).gather(-1, x0[..., None])[..., 0]
    log_q = (q.log() * (x_t == V)).sum(1)
    return (log_q - LANG.log_prob(x0) + log_z).float()


def mc_loss(energy, n: int = 20000, seed: int = 1) -> float:  # type: ignore[no-untyped-def]
    """Monte-Carlo NCE loss of ``energy(x0, x_t, t)`` on fresh data (fixed corruption seed)."""
    data = LANG.sample(n, torch.Generator().manual_seed(seed + 100))
    with torch.no_grad():
        return float(NCEObjective(LANG, V).loss(energy, data, torch.Generator().manual_seed(seed)))


def test_nce_loss_closed_form() -> None:
    e_pos, e_neg = torch.tensor([0.0, 1.5, -2.0]), torch.tensor([0.0, -0.5, 3.0])
    expect = torch.log1p(torch.exp(e_pos)) + torch.log1p(torch.exp(-e_neg))
    torch.testing.assert_close(nce_loss(e_pos, e_neg), expect)
    # -log sigma(-E+) - log sigma(E-), and stable where exp overflows.
    direct = -torch.sigmoid(-e_pos).log() - torch.sigmoid(e_neg).log()
    torch.testing.assert_close(nce_loss(e_pos, e_neg), direct)
    assert torch.isfinite(nce_loss(torch.tensor([1e4]), torch.tensor([-1e4]))).all()
    # Pooling: "sum" is the sum of the per-position head outputs.
    net = EnergyTransformer(V, dim=16, depth=1, pool="sum")
    x0, x_t = ALL[:5], torch.full((5, L), V)
    assert net(x0, x_t).shape == (5,)
    with pytest.raises(ValueError, match="pool"):
        EnergyTransformer(V, pool="max")


def test_exact_optimum_beats_zero_and_shifted_energies() -> None:
    # Per x_t the expected loss sum p softplus(E) + q softplus(-E) is minimised by E*; check by
    # enumeration for one x_t, then by Monte Carlo over the training distribution.
    x_t = torch.tensor([[V, 1, V, V]])
    consistent = ALL[(ALL[:, 1] == 1)]
    rows = x_t.expand(consistent.shape[0], -1)
    e_star = exact_energy(consistent, rows).double()
    p = LANG.log_prob(consistent).exp()
    p = p / p.sum()
    q = e_star.exp() * p  # E* = log q - log p: the proposal is recovered exactly
    assert float(q.sum()) == pytest.approx(1.0)

    def expected(e: Tensor) -> float:
        softplus = torch.nn.functional.softplus
        return float((p * softplus(e)).sum() + (q * softplus(-e)).sum())

    best = expected(e_star)
    for other in (torch.zeros_like(e_star), e_star + 0.3, e_star - 0.3, 0.5 * e_star):
        assert best < expected(other) - 1e-4
    zero, optimum = mc_loss(lambda a, b, t: torch.zeros(a.shape[0])), mc_loss(exact_energy)
    assert zero == pytest.approx(LOG4)
    assert optimum < zero - 0.05
    assert optimum < mc_loss(lambda a, b, t: exact_energy(a, b) + 0.5)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> NCEEnergy:
    data = LANG.sample(4000, torch.Generator().manual_seed(0))
    run_dir = Path(tmp_path_factory.mktemp("nce"))
    config = {
        "steps": 300,
        "batch_size": 128,
        "lr": 5e-3,
        "run_dir": str(run_dir),
        "progress": False,
        "ema": "none",
        "log_every": 1000,
        "checkpoint_every": 1000,
    }
    energy, trainer = train_nce_energy(LANG, data, V, config, {"dim": 32, "depth": 1})
    assert trainer.step == 300 and (run_dir / "energy.json").is_file()
    return energy


def test_training_lowers_the_nce_loss(trained: NCEEnergy) -> None:
    before, after = LOG4, mc_loss(trained.net)
    optimum = mc_loss(exact_energy)
    assert after < before - 0.03  # MC standard error of these losses is ~0.003
    assert after > optimum - 0.01  # no classifier beats the Bayes-optimal one


def test_importance_sampling_with_the_trained_energy(trained: NCEEnergy) -> None:
    # One-step decoding of the whole sequence: K = 1 is the product of marginals (MDLM); IS
    # with the trained energy moves the samples towards the chain (lower true NLL).
    canvas = masked_canvas(3000, L, V)
    nll = {}
    for name, energy, k in (
        ("mdlm", trained, 1),
        ("nce", trained, 8),
        ("oracle", AREnergy(LANG.log_prob), 8),
    ):
        out = edlm_sample(LANG, canvas, V, 1, energy, n_proposals=k, seed=3)
        per_seq = -LANG.log_prob(out.tokens)
        nll[name] = (float(per_seq.mean()), float(per_seq.std()) / math.sqrt(3000))
    se = math.hypot(nll["mdlm"][1], nll["nce"][1])
    assert nll["nce"][0] < nll["mdlm"][0] - 3 * se
    assert nll["oracle"][0] < nll["nce"][0] + 3 * se  # the exact energy is at least as good


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="masked DiscretePath"):
        NCEObjective(LANG, V, DiscretePath("linear", kind="uniform"))
    net = EnergyTransformer(V, dim=16, depth=1)
    with pytest.raises(ValueError, match="one shape"):
        net(torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="token ids"):
        net(torch.full((2, 4), V), torch.zeros(2, 4, dtype=torch.long))
