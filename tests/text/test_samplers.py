"""Masked-diffusion samplers against the exact law of a tiny Markov language (all 81 sequences
enumerable): first-hitting and many-step ancestral sampling are exact, few-step parallel
decoding is not; model-call counts; caching; batch invariance; conditioning."""

from __future__ import annotations

import pytest
import torch

from interpolant.paths.discrete import DiscretePath
from interpolant.text.markov import MarkovLanguage, all_sequences
from interpolant.text.metrics import exact_tv
from interpolant.text.samplers import (
    Randomness,
    ancestral,
    confidence_decode,
    first_hitting,
    first_hitting_time,
    masked_canvas,
    sample_text,
    transfer_counts,
)

V, L = 3, 4
LANG = MarkovLanguage.random(V, L, order=1, concentration=0.5, seed=3)
PROBS = LANG.log_prob(all_sequences(V, L)).exp()
# Chi-square(80 dof) has mean 80 and sd 12.6: 80 + 6 sd has p-value ~1e-7.
CHI2_MAX = 80 + 6 * 160**0.5


class Recorder:
    """The exact denoiser, recording every batch it is called on."""

    def __init__(self) -> None:
        self.calls: list[torch.Tensor] = []

    def __call__(self, tokens: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls.append(tokens.clone())
        return LANG(tokens, t)


def test_first_hitting_is_exact_with_one_call_per_token() -> None:
    out = first_hitting(LANG, masked_canvas(4000, L, V), V, seed=0)
    tv, chi2 = exact_tv(out.tokens, PROBS, V)
    assert chi2 < CHI2_MAX, (tv, chi2)
    assert out.nfe == L and bool((out.row_evals == L).all())


def test_parallel_first_hitting_calls_ceil_l_over_group() -> None:
    out = first_hitting(LANG, masked_canvas(50, L, V), V, group=3, seed=0)
    assert out.nfe == 2 and bool((out.row_evals == 2).all())
    assert bool((out.tokens < V).all())


def test_many_step_ancestral_is_exact_and_few_step_is_not() -> None:
    many = ancestral(LANG, masked_canvas(3000, L, V), V, steps=1000, cache=True, seed=1)
    assert exact_tv(many.tokens, PROBS, V)[1] < CHI2_MAX
    few = ancestral(LANG, masked_canvas(3000, L, V), V, steps=2, seed=1)
    assert few.nfe == 2
    assert exact_tv(few.tokens, PROBS, V)[1] > 10 * CHI2_MAX  # factorised steps are biased


def test_caching_skips_calls_exactly_when_nothing_changed() -> None:
    plain, cached = Recorder(), Recorder()
    x0 = masked_canvas(3, L, V)
    a = ancestral(plain, x0, V, steps=40, seed=5)
    b = ancestral(cached, x0, V, steps=40, seed=5, cache=True)
    assert torch.equal(a.tokens, b.tokens)
    assert a.nfe == 40 and bool((a.row_evals == 40).all())
    # The rows a step starts from; a row needs a call iff it differs from the previous start.
    starts = torch.stack(plain.calls)  # (steps, B, L)
    changed = (starts[1:] != starts[:-1]).any(-1)
    torch.testing.assert_close(b.row_evals, 1 + changed.sum(0))
    assert b.nfe == 1 + int(changed.any(1).sum())
    assert b.nfe <= 1 + 3 * L < 40


def test_samples_do_not_depend_on_the_batch() -> None:
    big = first_hitting(LANG, masked_canvas(6, L, V), V, seed=7).tokens
    small = first_hitting(LANG, masked_canvas(3, L, V), V, seed=7).tokens
    assert torch.equal(big[:3], small)
    big = ancestral(LANG, masked_canvas(6, L, V), V, steps=5, seed=7).tokens
    assert torch.equal(big[:2], ancestral(LANG, masked_canvas(2, L, V), V, steps=5, seed=7).tokens)


def test_randomness_streams_are_uniform() -> None:
    rng = Randomness(2000, seed=0)
    u = rng.uniform((50,))
    assert abs(float(u.mean()) - 0.5) < 0.005 and abs(float(u.var()) - 1 / 12) < 0.002
    u32 = rng.uniform((50,), dtype=torch.float32)
    assert u32.dtype == torch.float32 and bool(((u32 * 2**24) % 1 == 0).all())


@pytest.mark.parametrize("sampler", ["ancestral", "first_hitting", "confidence"])
def test_infill_keeps_given_tokens(sampler: str) -> None:
    canvas = torch.tensor([V, 2, V, 0])
    out = sample_text(LANG, L, 200, sampler=sampler, steps=4, vocab_size=V, canvas=canvas)
    assert bool((out.tokens[:, 1] == 2).all() and (out.tokens[:, 3] == 0).all())
    assert bool((out.tokens < V).all())
    # The infilled tokens follow the exact conditional law (first-hitting is exact).
    if sampler == "first_hitting":
        post = LANG.posterior(canvas[None])[0]
        freq = (out.tokens[:, 0, None] == torch.arange(V)).double().mean(0)
        assert float((freq - post[0]).abs().max()) < 0.12


def test_first_hitting_time_law() -> None:
    # With n masked tokens and linear alpha from t = 1, tau = u^(1/n): E[tau] = n / (n + 1).
    path = DiscretePath("linear")
    u = torch.rand(200_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    tau = first_hitting_time(path, torch.ones_like(u), torch.full_like(u, 4), u)
    assert float(tau.mean()) == pytest.approx(4 / 5, abs=3e-3)


def test_confidence_decoding_counts_and_blocks() -> None:
    torch.testing.assert_close(
        transfer_counts(torch.tensor([7, 4]), 3), torch.tensor([[3, 2, 2], [2, 1, 1]])
    )
    for order in ("confidence", "margin", "entropy", "random"):
        out = confidence_decode(LANG, masked_canvas(20, L, V), V, steps=4, order=order)
        assert out.nfe == 4 and bool((out.tokens < V).all())
    # Greedy confidence decoding is deterministic and block decoding with one block of L equals
    # full decoding.
    a = confidence_decode(LANG, masked_canvas(5, L, V), V, steps=2)
    b = confidence_decode(LANG, masked_canvas(5, L, V), V, steps=2, block_length=L, seed=9)
    assert torch.equal(a.tokens, b.tokens)
    # Semi-autoregressive: after the first step of two blocks of 2, only block 1 is filled.
    first = confidence_decode(LANG, masked_canvas(5, L, V), V, steps=2, block_length=2)
    assert first.nfe == 2


def test_float32_gumbel_truncates_rare_classes() -> None:
    # A class with p below 2^-24 of the top class can never win a float32 Gumbel-max draw,
    # while float64 draws select it at its rate (seed 7, sec. 4).
    from interpolant.text.samplers import gumbel_argmax

    probs = torch.tensor([[1.0, 1e-8, 1e-8]], dtype=torch.float64).expand(200_000, 3)
    g = torch.Generator().manual_seed(0)
    u32 = torch.rand(200_000, 3, generator=g, dtype=torch.float32)
    assert int((gumbel_argmax(probs, u32) > 0).sum()) == 0
    probs = torch.tensor([[1.0, 2e-5, 2e-5]], dtype=torch.float64).expand(200_000, 3)
    u64 = torch.rand(200_000, 3, generator=g, dtype=torch.float64)
    hits = int((gumbel_argmax(probs, u64) > 0).sum())  # expected 8, Poisson
    assert 1 <= hits <= 20


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="precision"):
        ancestral(LANG, masked_canvas(2, L, V), V, steps=2, precision="float16")
    with pytest.raises(ValueError, match="sampler must be one of"):
        sample_text(LANG, L, 2, sampler="nope", vocab_size=V)
    with pytest.raises(ValueError, match="vocab_size is required"):
        sample_text(lambda x, t: LANG(x, t), L, 2)
    with pytest.raises(ValueError, match="steps"):
        confidence_decode(LANG, masked_canvas(2, L, V), V, steps=1, block_length=1)
