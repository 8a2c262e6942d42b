"""Text metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant.text.markov import MarkovLanguage
from interpolant.text.metrics import (
    exact_tv,
    field_accuracy,
    json_validity,
    ngram_table,
    ngram_tv,
    table_tv,
    token_entropy,
    tokens_per_second,
    true_nll,
    zero_probability_fraction,
)


def test_true_nll_is_the_exact_per_token_nll() -> None:
    lang = MarkovLanguage.random(3, 4, seed=0)
    x = lang.sample(10, torch.Generator().manual_seed(1))
    assert true_nll(x, lang.log_prob) == pytest.approx(float(-lang.log_prob(x).mean() / 4))
    # Its expectation is the exact entropy per token.
    big = lang.sample(40_000, torch.Generator().manual_seed(2))
    assert true_nll(big, lang.log_prob) == pytest.approx(lang.sequence_entropy() / 4, abs=0.02)


def test_zero_probability_fraction() -> None:
    init = torch.tensor([1.0, 0.0], dtype=torch.float64)
    trans = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    lang = MarkovLanguage(init, trans, 3)
    x = torch.tensor([[0, 1, 0], [0, 0, 1], [1, 0, 1], [0, 1, 0]])
    assert zero_probability_fraction(x, lang.log_prob) == 0.5


def test_token_entropy_and_ngrams() -> None:
    x = torch.tensor([[0, 1, 0, 1]])
    assert token_entropy(x, 3) == pytest.approx(math.log(2))
    assert ngram_table(x, 2) == {(0, 1): 2, (1, 0): 1}
    assert table_tv({(0,): 1.0}, {(1,): 3.0}) == 1.0
    assert ngram_tv(x, x, 3) == 0.0
    y = torch.tensor([[1, 1, 1, 1]])
    assert ngram_tv(x, y, 1) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="n must lie"):
        ngram_table(x, 5)


def test_exact_tv_and_chi_square() -> None:
    probs = torch.tensor([0.25, 0.25, 0.5, 0.0], dtype=torch.float64)  # V = 2, L = 2
    x = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 0]])
    tv, chi2 = exact_tv(x, probs, 2)
    assert tv == pytest.approx(0.0) and chi2 == pytest.approx(0.0)
    tv, chi2 = exact_tv(torch.tensor([[1, 1], [0, 0]]), probs, 2)
    assert tv == pytest.approx(0.75) and math.isinf(chi2)


def test_json_metrics() -> None:
    texts = ['{"a": 1, "b": {"c": "x"}}', '{"a": 2', '{"a": 1, "b": {"c": "y"}}']
    refs = [{"a": 1, "b": {"c": "x"}}] * 3
    assert json_validity(texts) == pytest.approx(2 / 3)
    assert json_validity(texts, lambda o: o["b"]["c"] == "x") == pytest.approx(1 / 3)
    assert field_accuracy(texts, refs) == pytest.approx((1 + 0 + 0.5) / 3)
    with pytest.raises(ValueError, match="equal, non-zero"):
        field_accuracy(texts, refs[:1])


def test_tokens_per_second() -> None:
    assert tokens_per_second(100, 2.0) == 50.0
    assert math.isinf(tokens_per_second(1, 0.0))
    with pytest.raises(ValueError):
        tokens_per_second(-1, 1.0)
