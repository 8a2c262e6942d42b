"""EDLM-NCE: the loss against its closed form, the exact NCE optimum on an enumerable chain, a
short training run through the trainer, and importance sampling with the trained energy."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import Tensor

from interpolant.paths.discrete import DiscretePath
from interpolant.text.edlm import EDLM, AREnergy
from interpolant.text.edlm_nce import (
    EnergyTransformer,
    NCEEnergy,
    NCEObjective,
    nce_loss,
    optimal_energy,
    train_nce_energy,
)
from interpolant.text.loop import masked_canvas, sample_text
from interpolant.text.markov import MarkovLanguage, all_sequences
from interpolant.text.models import DiffusionTransformer

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
        out = sample_text(LANG, canvas, method=EDLM(energy, n_proposals=k), steps=1, seed=3)
        per_seq = -LANG.log_prob(out.tokens)
        nll[name] = (float(per_seq.mean()), float(per_seq.std()) / math.sqrt(3000))
    se = math.hypot(nll["mdlm"][1], nll["nce"][1])
    assert nll["nce"][0] < nll["mdlm"][0] - 3 * se
    assert nll["oracle"][0] < nll["nce"][0] + 3 * se  # the exact energy is at least as good


def test_optimal_energy_matches_enumeration() -> None:
    # The forward-algorithm E* (log P(visible) from MarkovLanguage.log_marginal) is the
    # enumerated one, including the all-masked and nothing-masked rows.
    gen = torch.Generator().manual_seed(5)
    x0 = LANG.sample(64, gen)
    x_t = NCEObjective(LANG, V).path.corrupt(x0, torch.rand(64, generator=gen), V, gen)
    x_t[0], x_t[1] = V, x0[1]
    negative = LANG.sample(64, gen)
    negative = torch.where(x_t == V, negative, x_t)
    for rows in (x0, negative):
        torch.testing.assert_close(
            optimal_energy(LANG, rows, x_t).float(), exact_energy(rows, x_t), rtol=1e-5, atol=1e-5
        )
    assert float(optimal_energy(LANG, x0[1:2], x_t[1:2])) == pytest.approx(0.0, abs=1e-9)


def test_load_denoiser_copies_the_trunk() -> None:
    # After load_denoiser the energy's trunk is the denoiser's blocks and norm applied to
    # proj([embed(x_t); embed(x0)]) = embed(x_t) + embed(x0).
    torch.manual_seed(0)
    dit = DiffusionTransformer(V, dim=16, depth=2, heads=2)
    for param in dit.parameters():  # away from the shared initial law
        param.data.normal_(0.0, 0.3)
    net = EnergyTransformer(V, dim=16, depth=2, heads=2).load_denoiser(dit)
    features: dict[str, Tensor] = {}
    dit.norm.register_forward_hook(lambda m, i, o: features.__setitem__("dit", o))
    net.norm.register_forward_hook(lambda m, i, o: features.__setitem__("energy", o))
    x_t = torch.tensor([[V, 1, V, 0], [2, V, V, V], [V, V, V, V]])
    x0 = ALL[[5, 17, 40]]
    with torch.no_grad():
        dit.trunk(dit.embed(x_t) + dit.embed(x0))
        energy = net(x0, x_t)
        torch.testing.assert_close(features["energy"], features["dit"])
        torch.testing.assert_close(net.embed.weight, dit.embed.weight)
        assert not torch.equal(energy, net(ALL[[70, 3, 11]], x_t))  # x0 matters from the start
    for bad in (
        DiffusionTransformer(V, dim=16, depth=1, heads=2),
        DiffusionTransformer(V + 1, dim=16, depth=2, heads=2),
        DiffusionTransformer(V, dim=16, depth=2, heads=2, time_conditioning=True),
        DiffusionTransformer(V, dim=16, depth=2, heads=2, max_length=8),
    ):
        with pytest.raises(ValueError, match="denoiser"):
            EnergyTransformer(V, dim=16, depth=2, heads=2).load_denoiser(bad)
    with pytest.raises(TypeError, match="DiffusionTransformer"):
        net.load_denoiser(net)  # type: ignore[arg-type]


def test_train_nce_energy_starts_from_the_denoiser(tmp_path: Path) -> None:
    # One step at a negligible learning rate: the trained energy still holds the denoiser's
    # embedding and blocks and the [I | I] projection, so the trainer started from them.
    torch.manual_seed(1)
    dit = DiffusionTransformer(V, dim=16, depth=1, heads=2)
    for param in dit.parameters():
        param.data.normal_(0.0, 0.3)
    config = {
        "steps": 1,
        "batch_size": 8,
        "lr": 1e-9,
        "run_dir": str(tmp_path),
        "progress": False,
        "ema": "none",
        "log_every": 1000,
        "checkpoint_every": 1000,
    }
    data = LANG.sample(64, torch.Generator().manual_seed(0))
    net = {"dim": 16, "depth": 1, "heads": 2}
    energy, _ = train_nce_energy(LANG, data, V, config, net, init=dit)
    torch.testing.assert_close(energy.net.embed.weight, dit.embed.weight, atol=1e-6, rtol=0)
    block, dit_block = energy.net.blocks[0].state_dict(), dit.blocks[0].state_dict()
    for key, value in dit_block.items():
        torch.testing.assert_close(block[key], value, atol=1e-6, rtol=0)
    eye = torch.eye(16)
    torch.testing.assert_close(
        energy.net.vocab_proj.weight, torch.cat([eye, eye], 1), atol=1e-6, rtol=0
    )


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="masked DiscretePath"):
        NCEObjective(LANG, V, DiscretePath("linear", kind="uniform"))
    net = EnergyTransformer(V, dim=16, depth=1)
    with pytest.raises(ValueError, match="one shape"):
        net(torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="token ids"):
        net(torch.full((2, 4), V), torch.zeros(2, 4, dtype=torch.long))
