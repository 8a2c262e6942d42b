"""Masked-diffusion samplers against the exact law of a tiny Markov language (all 81 sequences
enumerable): first-hitting and many-step ancestral sampling are exact, few-step parallel
decoding is not; model-call counts (one counter for every method); caching; batch and
active-row invariance of the random streams; conditioning; the spec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from interpolant.errors import UserError
from interpolant.paths.discrete import DiscretePath
from interpolant.randomness import Streams, inverse_cdf
from interpolant.text.edlm import EDLM, AREnergy
from interpolant.text.loop import (
    Method,
    Query,
    SamplingRun,
    TextSampler,
    masked_canvas,
    sample_text,
)
from interpolant.text.markov import MarkovLanguage, all_sequences
from interpolant.text.metrics import exact_tv
from interpolant.text.samplers import (
    Confidence,
    FirstHitting,
    first_hitting_time,
    gumbel_argmax,
    transfer_counts,
)

V, L = 3, 4
LANG = MarkovLanguage.random(V, L, order=1, concentration=0.5, seed=3)
PROBS = LANG.log_prob(all_sequences(V, L)).exp()
# Chi-square(80 dof) has mean 80 and sd 12.6: 80 + 6 sd has p-value ~1e-7.
CHI2_MAX = 80 + 6 * 160**0.5


class Recorder:
    """The exact denoiser, recording every batch it is called on."""

    vocab_size = V

    def __init__(self) -> None:
        self.calls: list[torch.Tensor] = []

    def __call__(self, tokens: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls.append(tokens.clone())
        return LANG(tokens, t)


def test_first_hitting_is_exact_with_one_call_per_token() -> None:
    out = sample_text(LANG, masked_canvas(4000, L, V), method="first_hitting", seed=0)
    tv, chi2 = exact_tv(out.tokens, PROBS, V)
    assert chi2 < CHI2_MAX, (tv, chi2)
    assert out.nfe == L and bool((out.row_evals == L).all())


def test_parallel_first_hitting_calls_ceil_l_over_group() -> None:
    out = sample_text(LANG, masked_canvas(50, L, V), method=FirstHitting(group=3), seed=0)
    assert out.nfe == 2 and bool((out.row_evals == 2).all())
    assert bool((out.tokens < V).all())


def test_many_step_ancestral_is_exact_and_few_step_is_not() -> None:
    canvas = masked_canvas(3000, L, V)
    many = sample_text(LANG, canvas, method="ancestral", steps=1000, cache=True, seed=1)
    assert exact_tv(many.tokens, PROBS, V)[1] < CHI2_MAX
    few = sample_text(LANG, canvas, method="ancestral", steps=2, seed=1)
    assert few.nfe == 2
    assert exact_tv(few.tokens, PROBS, V)[1] > 10 * CHI2_MAX  # factorised steps are biased


def test_caching_skips_calls_exactly_when_nothing_changed() -> None:
    plain, cached = Recorder(), Recorder()
    x0 = masked_canvas(3, L, V)
    spec = TextSampler("ancestral", steps=40, seed=5)
    a = sample_text(plain, x0, spec)
    b = sample_text(cached, x0, spec, cache=True)
    assert torch.equal(a.tokens, b.tokens)
    assert a.nfe == 40 and bool((a.row_evals == 40).all())
    # The rows a step starts from; a row needs a call iff it differs from the previous start.
    starts = torch.stack(plain.calls)  # (steps, B, L)
    changed = (starts[1:] != starts[:-1]).any(-1)
    torch.testing.assert_close(b.row_evals, 1 + changed.sum(0))
    assert b.nfe == 1 + int(changed.any(1).sum()) == len(cached.calls)
    assert b.nfe <= 1 + 3 * L < 40


@pytest.mark.parametrize(
    "spec",
    [
        TextSampler("ancestral", steps=7),
        TextSampler("ancestral", steps=30, cache=True),
        TextSampler("first_hitting"),
        TextSampler(FirstHitting(group=3), precision="float32"),
        TextSampler(Confidence(temperature=1.0, block_length=2), steps=4),
        TextSampler("confidence", steps=8, cache=True),
        TextSampler(EDLM(AREnergy(LANG.log_prob), n_proposals=3), steps=3),
    ],
    ids=lambda spec: spec.method.name,
)
def test_nfe_and_row_evals_are_the_denoiser_calls(spec: TextSampler) -> None:
    # Every method is counted in one place (SamplingRun.evaluate): nfe is the number of batched
    # calls, row_evals the number of times each row was in a call.
    counter = Recorder()
    canvas = masked_canvas(5, L, V)
    canvas[1, :2] = torch.tensor([0, 1])  # a row with fewer masks finishes early
    out = sample_text(counter, canvas, spec, seed=3)
    assert out.nfe == len(counter.calls) > 0
    assert int(out.row_evals.sum()) == sum(int(b.shape[0]) for b in counter.calls)
    assert int(out.row_evals.max()) <= out.nfe
    assert bool((out.tokens < V).all()) and torch.equal(out.tokens[1, :2], torch.tensor([0, 1]))


def test_samples_do_not_depend_on_the_batch() -> None:
    fhs = TextSampler("first_hitting", seed=7)
    big = sample_text(LANG, masked_canvas(6, L, V), fhs).tokens
    assert torch.equal(big[:3], sample_text(LANG, masked_canvas(3, L, V), fhs).tokens)
    anc = TextSampler("ancestral", steps=5, seed=7)
    big = sample_text(LANG, masked_canvas(6, L, V), anc).tokens
    assert torch.equal(big[:2], sample_text(LANG, masked_canvas(2, L, V), anc).tokens)


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_a_row_does_not_depend_on_which_rows_are_active(precision: str) -> None:
    # Row 1 finishes after one call in the first batch and after L in the second: row 0's
    # k-th draw is the same in both (counter-based streams).
    spec = TextSampler("first_hitting", precision=precision, seed=11)
    early = masked_canvas(2, L, V)
    early[1, 1:] = torch.tensor([0, 1, 2])
    a = sample_text(LANG, early, spec)
    b = sample_text(LANG, masked_canvas(2, L, V), spec)
    assert torch.equal(a.tokens[0], b.tokens[0])
    assert a.row_evals.tolist() == [L, 1]


def test_draws_come_from_the_one_randomness_module() -> None:
    # One ancestral step from t = 1 to 0 unmasks every token (a(0) = 1) by inverse CDF of the
    # second of each position's two float64 uniforms of the "text-ancestral" streams.
    canvas = masked_canvas(6, L, V)
    out = sample_text(LANG, canvas, method="ancestral", steps=1, seed=4)
    u = Streams(4, 6, stream="text-ancestral").uniform((L, 2))
    torch.testing.assert_close(out.tokens, inverse_cdf(LANG.posterior(canvas), u[..., 1]))
    assert out.sampler == TextSampler("ancestral", steps=1, seed=4)


@pytest.mark.parametrize("method", ["ancestral", "first_hitting", "confidence"])
def test_infill_keeps_given_tokens(method: str) -> None:
    canvas = torch.tensor([V, 2, V, 0]).repeat(200, 1)
    steps = None if method == "first_hitting" else 4
    out = sample_text(LANG, canvas, method=method, steps=steps, vocab_size=V, seed=0)
    assert bool((out.tokens[:, 1] == 2).all() and (out.tokens[:, 3] == 0).all())
    assert bool((out.tokens < V).all())
    # The infilled tokens follow the exact conditional law (first-hitting is exact).
    if method == "first_hitting":
        post = LANG.posterior(canvas[:1])[0]
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
    canvas = masked_canvas(20, L, V)
    for order in ("confidence", "margin", "entropy", "random"):
        out = sample_text(LANG, canvas, method=Confidence(order=order), steps=4, seed=0)
        assert out.nfe == 4 and bool((out.tokens < V).all())
    # Greedy confidence decoding is deterministic and block decoding with one block of L equals
    # full decoding.
    a = sample_text(LANG, canvas[:5], method="confidence", steps=2, seed=0)
    b = sample_text(LANG, canvas[:5], method=Confidence(block_length=L), steps=2, seed=9)
    assert torch.equal(a.tokens, b.tokens)
    # Semi-autoregressive: two blocks of 2, one step each.
    first = sample_text(LANG, canvas[:5], method=Confidence(block_length=2), steps=2, seed=0)
    assert first.nfe == 2


def test_float32_gumbel_truncates_rare_classes() -> None:
    # A class with p below 2^-24 of the top class can never win a float32 Gumbel-max draw on
    # the float32 uniforms of the streams, while float64 draws select it at its rate (seed 7,
    # sec. 4).
    streams = Streams(0, 200_000, stream="test-gumbel")
    probs = torch.tensor([[1.0, 1e-8, 1e-8]], dtype=torch.float64).expand(200_000, 3)
    u32 = streams.uniform((3,), dtype=torch.float32)
    assert u32.dtype == torch.float32 and bool(((u32 * 2**24) % 1 == 0).all())
    assert int((gumbel_argmax(probs, u32) > 0).sum()) == 0
    probs = torch.tensor([[1.0, 2e-5, 2e-5]], dtype=torch.float64).expand(200_000, 3)
    hits = int((gumbel_argmax(probs, streams.uniform((3,))) > 0).sum())  # expected 8, Poisson
    assert 1 <= hits <= 20


def test_the_spec_round_trips_and_records_its_seed() -> None:
    spec = TextSampler(Confidence(order="margin", temperature=0.5), steps=6, precision="float32")
    assert TextSampler.from_config(spec.config()) == spec
    assert spec.config()["method"] == {
        "name": "confidence", "order": "margin", "temperature": 0.5, "block_length": None,
    }  # fmt: skip
    torch.manual_seed(0)
    out = sample_text(LANG, masked_canvas(2, L, V), spec)
    assert out.sampler.seed is not None and out.sampler.replace(seed=None) == spec
    again = sample_text(LANG, masked_canvas(2, L, V), out.sampler)
    assert torch.equal(again.tokens, out.tokens)


@dataclass(frozen=True)
class Overwrite(Method[list[int]]):
    """A broken method: writes token 0 everywhere."""

    name: ClassVar[str] = "overwrite"
    uses_steps: ClassVar[bool] = False

    def start(self, run: SamplingRun) -> list[int]:
        return []

    def query(self, run: SamplingRun, state: list[int]) -> Query | None:
        return None if state else Query(torch.ones(run.batch, dtype=torch.float64))

    def update(self, run: SamplingRun, state: list[int], query: Query, probs: torch.Tensor):
        state.append(1)
        return torch.zeros_like(run.x)


def test_the_loop_refuses_a_changed_fixed_token() -> None:
    canvas = torch.tensor([[V, 2, V, 0]])
    with pytest.raises(RuntimeError, match="changed a fixed token"):
        sample_text(LANG, canvas, method=Overwrite())


def test_bad_arguments() -> None:
    canvas = masked_canvas(2, L, V)
    with pytest.raises(UserError, match="precision"):
        sample_text(LANG, canvas, method="ancestral", steps=2, precision="float16")
    with pytest.raises(UserError, match="unknown text sampler"):
        sample_text(LANG, canvas, method="nope")
    with pytest.raises(UserError, match="vocab_size is required"):
        sample_text(lambda x, t: LANG(x, t), canvas, seed=0)
    with pytest.raises(UserError, match="steps"):
        sample_text(LANG, canvas, method=Confidence(block_length=1), steps=1)
    with pytest.raises(UserError, match="needs steps"):
        TextSampler("ancestral")
    with pytest.raises(UserError, match="takes no steps"):
        TextSampler("first_hitting", steps=8)
    with pytest.raises(UserError, match="ancestral"):
        TextSampler("first_hitting", cache=True)
    with pytest.raises(UserError, match="order"):
        Confidence(order="loudest")
    with pytest.raises(UserError, match="no option"):
        sample_text(LANG, canvas, {"method": "ancestral", "steps": 2, "stpes": 3})
