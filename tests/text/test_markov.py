"""The Markov-chain language: exact law, entropy, and the forward-backward denoiser against
brute-force enumeration."""

from __future__ import annotations

import pytest
import torch

from interpolant.text.markov import MarkovLanguage, all_sequences, sequence_index


@pytest.fixture(params=[1, 2], ids=["order1", "order2"])
def lang(request: pytest.FixtureRequest) -> MarkovLanguage:
    return MarkovLanguage.random(3, 5, order=request.param, concentration=0.5, seed=1)


def brute_posterior(lang: MarkovLanguage, tokens: torch.Tensor) -> torch.Tensor:
    """p(x_i = v | visible) by summing p(x) over all sequences consistent with ``tokens``."""
    seqs = all_sequences(lang.vocab_size, lang.length)
    p = lang.log_prob(seqs).exp()
    out = torch.zeros(tokens.shape[0], lang.length, lang.vocab_size, dtype=torch.float64)
    for b, row in enumerate(tokens):
        w = p * ((row == lang.vocab_size) | (seqs == row)).all(1)
        w = w / w.sum()
        for v in range(lang.vocab_size):
            out[b, :, v] = (w[:, None] * (seqs == v)).sum(0)
    return out


def test_law_sums_to_one_and_matches_samples(lang: MarkovLanguage) -> None:
    seqs = all_sequences(3, 5)
    p = lang.log_prob(seqs).exp()
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-12)
    x = lang.sample(40_000, torch.Generator().manual_seed(0))
    freq = torch.bincount(sequence_index(x, 3), minlength=243).double() / 40_000
    chi2 = float(((freq - p) ** 2 / p.clamp_min(1e-12)).sum() * 40_000)
    assert chi2 < 242 + 6 * (2 * 242) ** 0.5  # mean + 6 sd of chi-square(242)


def test_sequence_entropy_is_exact(lang: MarkovLanguage) -> None:
    lp = lang.log_prob(all_sequences(3, 5))
    assert lang.sequence_entropy() == pytest.approx(float(-(lp.exp() * lp).sum()), rel=1e-10)
    assert 0 < lang.entropy_rate() <= torch.log(torch.tensor(3.0)).item() + 1e-12


def test_denoiser_matches_enumeration(lang: MarkovLanguage) -> None:
    m = lang.vocab_size
    tokens = torch.tensor([[m, 1, m, m, 0], [m] * 5, [2, m, m, 0, m], [1, 0, 2, m, 1]])
    post = lang.posterior(tokens)
    torch.testing.assert_close(post, brute_posterior(lang, tokens), atol=1e-12, rtol=0)
    logits = lang(tokens, torch.zeros(4))
    assert logits.shape == (4, 5, 3)
    # Visible positions are one-hot.
    assert float(post[0, 1, 1]) == pytest.approx(1.0)


def test_denoiser_is_batch_invariant() -> None:
    lang = MarkovLanguage.random(4, 6, order=2, seed=3)
    x = lang.sample(8, torch.Generator().manual_seed(1))
    x[torch.rand(x.shape, generator=torch.Generator().manual_seed(2)) < 0.6] = 4
    full = lang.posterior(x)
    torch.testing.assert_close(full[3:5], lang.posterior(x[3:5]), atol=1e-14, rtol=0)


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="trans must have shape"):
        MarkovLanguage(torch.ones(3) / 3, torch.ones(3, 2) / 2, 4)
    with pytest.raises(ValueError, match="length must be >= order"):
        MarkovLanguage(torch.ones(3, 3) / 9, torch.ones(3, 3, 3) / 3, 1)
    lang = MarkovLanguage.random(3, 4)
    with pytest.raises(ValueError, match="length 4"):
        lang.posterior(torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="token ids must lie"):
        lang.log_prob(torch.full((1, 4), 3))


def test_log_marginal_matches_enumeration(lang: MarkovLanguage) -> None:
    # log P(visible tokens) = log sum of p(x) over the sequences that agree with them.
    seqs = all_sequences(lang.vocab_size, lang.length)
    p = lang.log_prob(seqs).exp()
    gen = torch.Generator().manual_seed(3)
    x0 = lang.sample(40, gen)
    tokens = torch.where(torch.rand(x0.shape, generator=gen) < 0.5, lang.vocab_size, x0)
    tokens[0] = lang.vocab_size  # all masked: log 1
    tokens[1] = x0[1]  # none masked: log p(x)
    agree = ((tokens[:, None] == lang.vocab_size) | (tokens[:, None] == seqs[None])).all(-1)
    expect = (agree * p).sum(1).log()
    torch.testing.assert_close(lang.log_marginal(tokens), expect)
    assert float(lang.log_marginal(tokens[:1])) == pytest.approx(0.0, abs=1e-12)
    torch.testing.assert_close(lang.log_marginal(tokens[1:2]), lang.log_prob(x0[1:2]))
