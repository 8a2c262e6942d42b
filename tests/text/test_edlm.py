"""EDLM importance sampling: the weights, the K = 1 reduction to MDLM, and that IS with the true
law as energy moves one-step parallel decoding towards the exact law."""

from __future__ import annotations

import pytest
import torch

from interpolant.randomness import Streams
from interpolant.text.edlm import EDLM, AREnergy, draw_proposals, importance_weights
from interpolant.text.loop import TextSampler, masked_canvas, sample_text
from interpolant.text.markov import MarkovLanguage, all_sequences
from interpolant.text.metrics import exact_tv

V, L = 3, 4
LANG = MarkovLanguage.random(V, L, order=1, concentration=0.3, seed=2)
PROBS = LANG.log_prob(all_sequences(V, L)).exp()


def edlm(
    canvas: torch.Tensor, steps: int, seed: int, n_proposals: int, window=(0.0, 1.0)
) -> torch.Tensor:
    """EDLM-AR samples with the true chain as energy."""
    method = EDLM(AREnergy(LANG.log_prob), n_proposals=n_proposals, window=window)
    return sample_text(LANG, canvas, method=method, steps=steps, seed=seed).tokens


def test_weights_favour_higher_ar_likelihood() -> None:
    # Two proposals with equal proposal probability: the likelier one under p_AR gets the
    # weight p_AR(a) / (p_AR(a) + p_AR(b)); the flipped sign reverses the order.
    x = LANG.sample(2, torch.Generator().manual_seed(0))
    energy = AREnergy(LANG.log_prob)
    e = energy(x, x, torch.zeros(2))
    w = importance_weights(e[None])[0]
    p = LANG.log_prob(x).exp()
    torch.testing.assert_close(w, p / p.sum())
    flipped = importance_weights(e[None], sign=-1.0)[0]
    assert (w[0] > w[1]) == (flipped[0] < flipped[1])
    uniform = torch.full((1, 3), 1 / 3, dtype=torch.float64)
    torch.testing.assert_close(importance_weights(torch.full((1, 3), torch.inf)), uniform)


def test_proposals_keep_visible_tokens_and_score_masked_ones() -> None:
    x_t = torch.tensor([[V, 1, V, 0]])
    probs = LANG.posterior(x_t)
    x0, logq = draw_proposals(x_t, probs, 5, Streams(0, 1, stream="test-proposals"))
    assert x0.shape == (1, 5, L) and bool((x0[..., 1] == 1).all() and (x0[..., 3] == 0).all())
    expect = probs[0, 0].log()[x0[0, :, 0]] + probs[0, 2].log()[x0[0, :, 2]]
    torch.testing.assert_close(logq[0], expect)


def test_one_proposal_is_mdlm_in_law() -> None:
    # K = 1 and ancestral are the same one-step sampler: both give the product of marginals.
    canvas = masked_canvas(4000, L, V)
    a = edlm(canvas, 1, seed=0, n_proposals=1)
    b = sample_text(LANG, canvas, method="ancestral", steps=1, seed=1).tokens
    marg = LANG.posterior(canvas[:1])[0]
    product = torch.ones(V**L, dtype=torch.float64)
    for i in range(L):
        product = product * marg[i][all_sequences(V, L)[:, i]]
    for tokens in (a, b):
        assert exact_tv(tokens, product, V)[1] < 80 + 6 * 160**0.5


def test_importance_sampling_approaches_the_exact_law() -> None:
    canvas = masked_canvas(3000, L, V)
    tv = {k: exact_tv(edlm(canvas, 1, seed=3, n_proposals=k), PROBS, V)[0] for k in (1, 32)}
    assert tv[32] < 0.5 * tv[1]
    # Outside the window the step is MDLM's: a window that excludes every step changes nothing.
    off = edlm(canvas[:50], 2, seed=4, n_proposals=8, window=(0.0, 0.1))
    assert torch.equal(off, edlm(canvas[:50], 2, seed=4, n_proposals=1))


def test_bad_arguments() -> None:
    energy = AREnergy(LANG.log_prob)
    with pytest.raises(ValueError, match="n_proposals"):
        EDLM(energy, n_proposals=0)
    with pytest.raises(ValueError, match="window"):
        EDLM(energy, window=(0.8, 0.2))
    with pytest.raises(ValueError, match="float64"):
        TextSampler(EDLM(energy), steps=2, precision="float32")
    with pytest.raises(ValueError, match="needs steps"):
        sample_text(LANG, masked_canvas(2, L, V), method=EDLM(energy))


def test_partial_proposals_fill_only_the_chosen_positions() -> None:
    x_t = torch.tensor([[V, 1, V, V]])
    probs = LANG.posterior(x_t)
    fill = torch.tensor([[True, True, False, True]])  # position 1 is visible anyway
    x_s, logq = draw_proposals(x_t, probs, 6, Streams(0, 1, stream="test-partial"), fill=fill)
    assert bool((x_s[..., 2] == V).all() and (x_s[..., 1] == 1).all())
    assert bool((x_s[..., 0] < V).all() and (x_s[..., 3] < V).all())
    expect = probs[0, 0].log()[x_s[0, :, 0]] + probs[0, 3].log()[x_s[0, :, 3]]
    torch.testing.assert_close(logq[0], expect)


def test_partial_importance_sampling_is_exact_in_the_limit() -> None:
    # With E = -log P(visible tokens of x_s) + log q (the forward algorithm), the weights are
    # those of each step's exact joint, so as K grows the law of two-step decoding goes to the
    # exact one (TV falls like 1 / K plus the sampling floor). A sparse chain of length 6, all
    # 729 sequences enumerated; the exact-sample TV at this n is the floor.
    lang = MarkovLanguage.random(3, 6, order=1, concentration=0.1, seed=2)
    probs = lang.log_prob(all_sequences(3, 6)).exp()
    canvas = masked_canvas(6000, 6, 3)

    def tv(n_proposals: int) -> float:
        method = EDLM(AREnergy(lang.log_marginal), n_proposals=n_proposals, partial=True)
        out = sample_text(lang, canvas, method=method, steps=2, seed=3).tokens
        return exact_tv(out, probs, 3)[0]

    floor = exact_tv(lang.sample(6000, torch.Generator().manual_seed(9)), probs, 3)[0]
    mdlm, k8, k64 = tv(1), tv(8), tv(64)
    assert k64 < k8 < 0.2 * mdlm
    assert k64 < 1.5 * floor
    # The energy must take masked tokens: a log_prob of complete sequences only is refused.
    method = EDLM(AREnergy(lang.log_prob), n_proposals=4, partial=True)
    with pytest.raises(ValueError, match="token ids"):
        sample_text(lang, canvas[:4], method=method, steps=2, seed=0)
