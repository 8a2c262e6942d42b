"""GDSS: symmetric noise and outputs, permutation equivariance, the analytic VP kernels,
sampling contracts (batch invariance, NFE, quantisation) and a short training run."""

from __future__ import annotations

import math

import networkx as nx
import pytest
import torch

from interpolant.errors import UserError
from interpolant.graphs import GraphBatch, permute_nodes
from interpolant.graphs import data as gdata
from interpolant.graphs.convert import from_networkx, from_smiles, to_networkx, to_smiles
from interpolant.graphs.gdss import (
    GDSS,
    gdss_vp,
    linear_sde,
    quantize,
    sample,
    symmetric_noise,
    transition,
)
from interpolant.graphs.gdss_train import train_gdss
from interpolant.paths import VE
from interpolant.randomness import Streams

torch.set_num_threads(1)


def _batch() -> GraphBatch:
    graphs = [nx.gnp_random_graph(n, 0.5, seed=n) for n in (6, 8, 5)]
    return from_networkx(graphs, max_nodes=8)


def test_symmetric_noise_is_symmetric_masked_and_standard() -> None:
    mask = torch.arange(30)[None, :] < torch.tensor([30, 20])[:, None]
    z = symmetric_noise(Streams(0, [0, 1], "t"), 30, mask)
    assert torch.equal(z, z.transpose(-1, -2))
    assert torch.all(z.diagonal(dim1=-2, dim2=-1) == 0) and torch.all(z[1, 20:] == 0)
    upper = z[0][torch.triu(torch.ones(30, 30, dtype=torch.bool), 1)]
    assert abs(float(upper.mean())) < 0.1 and abs(float(upper.var()) - 1) < 0.1


def test_networks_are_symmetric_and_permutation_equivariant() -> None:
    torch.manual_seed(0)
    model = GDSS(10, 8, layers=3, hidden=16, attn_dim=16).double()
    b = _batch()
    x = b.x.double() + 0.3 * torch.randn(3, 8, 10, dtype=torch.float64) * b.mask[..., None]
    a = b.adj.double() + 0.2 * symmetric_noise(Streams(1, [0, 1, 2], "t"), 8, b.mask).double()
    ex, ea = model.predict_noise(x, a, b.mask)
    assert torch.allclose(ea, ea.transpose(-1, -2), atol=1e-12)
    assert torch.all(ea.diagonal(dim1=-2, dim2=-1) == 0)
    assert torch.all(ex[2, 5:] == 0) and torch.all(ea[2, 5:] == 0)  # padded nodes stay empty
    perm = torch.tensor([3, 7, 0, 5, 1, 6, 2, 4])
    xp, ap = permute_nodes(x, a, perm)
    exp_, eap = model.predict_noise(xp, ap, b.mask[:, perm])
    ex_perm, ea_perm = permute_nodes(ex, ea, perm)
    # s(P X, P A P^T) = P s_X(X, A) and P s_A(X, A) P^T.
    assert torch.allclose(exp_, ex_perm, atol=1e-10) and torch.allclose(eap, ea_perm, atol=1e-10)


def test_transition_kernels_are_the_analytic_vp_ones() -> None:
    path = gdss_vp()
    t = torch.tensor([0.1, 0.4, 0.9], dtype=torch.float64)
    # GDSS sde.py VPSDE.marginal_prob: log mean = -t^2 (b1 - b0) / 4 - t b0 / 2.
    log_mean = -0.25 * t**2 * 0.9 - 0.5 * t * 0.1
    assert torch.allclose(path.alpha(t), log_mean.exp(), rtol=1e-12)
    assert torch.allclose(path.sigma(t), (1 - (2 * log_mean).exp()).sqrt(), rtol=1e-12)
    # f = -beta / 2, g^2 = beta for the VP-SDE.
    f, g2 = linear_sde(path, t)
    beta = 0.1 + 0.9 * t
    assert torch.allclose(f, -beta / 2, rtol=1e-10) and torch.allclose(g2, beta, rtol=1e-10)
    # GDSS VPSDE.transition(x, t, dt): log c = dt (2 b0 + (2t + dt)(b1 - b0)) / 4, mean e^-c x,
    # std sqrt(1 - e^{2c}) (dt < 0: the backward half steps of S4).
    dt = -0.05
    c = 0.25 * dt * (2 * 0.1 + (2 * t + dt) * 0.9)
    r, std = transition(path, t, t + dt)
    assert torch.allclose(r, torch.exp(-c), rtol=1e-12)
    assert torch.allclose(std, (1 - torch.exp(2 * c)).sqrt(), rtol=1e-10)
    # Forward kernels compose to the marginal: r_{0->t} = alpha(t), std = sigma(t).
    r0, s0 = transition(path, torch.zeros(3, dtype=torch.float64), t)
    assert torch.allclose(r0, path.alpha(t)) and torch.allclose(s0, path.sigma(t))
    # VE (GDSS's QM9 setting): mean 1, variance sigma_t^2 - sigma_s^2.
    ve = VE(sigma_min=0.1, sigma_max=1.0)
    r, std = transition(ve, t, t - 0.05)
    assert torch.allclose(r, torch.ones(3, dtype=torch.float64))
    assert torch.allclose(std**2, ve.sigma(t) ** 2 - ve.sigma(t - 0.05) ** 2)


def test_perturbation_has_the_vp_marginal() -> None:
    b = from_networkx([nx.complete_graph(20)])
    t = torch.tensor([0.6])
    model = GDSS(10, 20, layers=2, hidden=8, attn_dim=8)
    zs = torch.stack([symmetric_noise(Streams(3, [i], "m"), 20, b.mask)[0] for i in range(200)])
    at = model.path_adj.alpha(t) * b.adj[0] + model.path_adj.sigma(t) * zs
    off = ~torch.eye(20, dtype=torch.bool)
    assert abs(float(at[:, off].mean()) - float(model.path_adj.alpha(t))) < 0.01
    assert abs(float(at[:, off].std()) - float(model.path_adj.sigma(t))) < 0.01


def test_sampling_is_batch_invariant_counts_nfe_and_quantises() -> None:
    torch.manual_seed(0)
    model = GDSS(10, 8, layers=2, hidden=8, attn_dim=8).eval()
    full = sample(model, [6, 8, 5], steps=4, seed=7)
    alone = sample(model, [5], steps=4, seed=7, index=[2])
    assert torch.allclose(full.adj[2], alone.adj[0], atol=1e-6)
    assert full.nfe == 4 and sample(model, [6], solver="pc", steps=4).nfe == 8
    g = full.graphs()
    assert torch.equal(g.adj, g.adj.transpose(-1, -2)) and set(g.adj.unique().tolist()) <= {0, 1}
    with pytest.raises(UserError, match="max_nodes = 8"):
        sample(model, [9], steps=2)
    with pytest.raises(UserError, match="max_nodes = 8"):
        model.loss(
            from_networkx([nx.path_graph(3)], max_nodes=5), torch.ones(1), Streams(0, [0], "t")
        )


def test_molecule_quantisation_and_valency_check() -> None:
    mols, _ = from_smiles(["C=CC#N", "CCO"], max_atoms=5)
    x = mols.x + 0.2 * mols.mask[..., None]  # noisy atom scores: argmax unchanged
    adj = mols.adj / 3 + 0.1 * mols.pair_mask()  # bond order / 3 plus a shift < 0.5 / 3
    q = quantize(x, adj, mols.mask, molecule=True)
    assert torch.equal(q.adj, mols.adj) and to_smiles(q) == ["C=CC#N", "CCO"]
    bad = quantize(x, adj + 2.0 / 3 * mols.pair_mask() * (mols.adj > 0), mols.mask, True)
    assert to_smiles(bad)[1] is None  # C#C#O-like: every bond raised by 2 breaks the valences


def test_short_training_lowers_the_loss_and_beats_noise() -> None:
    train, test = gdata.split(gdata.community_small(40))
    model, losses = train_gdss(
        train,
        epochs=25,
        max_nodes=20,
        layers=2,
        hidden=8,
        attn_dim=8,
        batch_size=32,
        progress=False,
    )
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
    out = sample(model, [g.number_of_nodes() for g in test], steps=20)
    graphs = to_networkx(out.graphs())
    assert all(
        g.number_of_nodes() == t.number_of_nodes() for g, t in zip(graphs, test, strict=True)
    )
    assert math.isfinite(float(out.adj.abs().max()))
