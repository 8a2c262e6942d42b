"""PCFG: the inside algorithm against brute-force enumeration of derivations, the length law,
the padded fixed-length language sums to one, sampling matches the exact probabilities."""

import math
from collections import defaultdict
from itertools import product

import numpy as np
import pytest
import torch

from interpolant.text.pcfg import PCFG, PCFGLanguage, toy_grammar

# Ambiguous on purpose: "a a a" has two parse trees (Catalan-many in general).
TINY = {
    "S": [(("S", "S"), 0.3), (("A", "B"), 0.2), (("a",), 0.3), (("b",), 0.2)],
    "A": [(("a",), 0.7), (("A", "S"), 0.3)],
    "B": [(("b",), 1.0)],
}


def brute_force(grammar: PCFG, max_len: int) -> dict[tuple[str, ...], float]:
    """p(w) for every w with len(w) <= max_len, summing over all leftmost derivations."""
    out: dict[tuple[str, ...], float] = defaultdict(float)
    rules = grammar._rules

    def expand(done: tuple[str, ...], pending: tuple[str, ...], prob: float) -> None:
        if len(done) + len(pending) > max_len:
            return
        if not pending:
            out[done] += prob
            return
        head, rest = pending[0], pending[1:]
        for rhs, p in rules[head]:
            if len(rhs) == 1:
                expand((*done, rhs[0]), rest, prob * p)
            else:
                expand(done, (*rhs, *rest), prob * p)

    expand((), (grammar.start,), 1.0)
    return out


@pytest.mark.parametrize("grammar,max_len", [(PCFG(TINY), 6), (toy_grammar(), 6)])
def test_inside_equals_brute_force(grammar, max_len):
    exact = brute_force(grammar, max_len)
    assert len(exact) > 10
    for string, prob in exact.items():
        assert math.exp(grammar.log_prob(string)) == pytest.approx(prob, rel=1e-10)
    lengths = grammar.length_probs(max_len)
    for n in range(1, max_len + 1):
        total = sum(p for s, p in exact.items() if len(s) == n)
        assert lengths[n] == pytest.approx(total, rel=1e-10, abs=1e-15)


def test_underivable_strings_have_zero_probability():
    g = PCFG(TINY)
    assert g.log_prob(("b", "a")) == pytest.approx(math.log(0.3 * 0.2 * 0.3))  # S -> S S
    assert toy_grammar().log_prob(("the", "the")) == -math.inf
    with pytest.raises(ValueError, match=r"\(1, 'x'\)"):
        g.log_prob(("a", "x"))


def test_padded_language_is_normalised_over_all_sequences():
    lang = PCFGLanguage(PCFG(TINY), length=4)
    seqs = torch.tensor(list(product(range(lang.vocab_size), repeat=4)))
    probs = lang.log_prob(seqs).exp()
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-12)
    # A pad before a word is impossible; an all-pad row too.
    assert lang.log_prob(torch.tensor([[lang.pad_id, 0, 0, 0]]))[0] == -math.inf


def test_samples_follow_the_exact_law():
    lang = PCFGLanguage(PCFG(TINY), length=4)
    n = 4000
    x = lang.sample(n, torch.Generator().manual_seed(0))
    rows, counts = torch.unique(x, dim=0, return_counts=True)
    exact = lang.log_prob(rows).exp().numpy()
    assert np.isfinite(np.log(exact)).all()  # never an impossible sequence
    seqs = torch.tensor(list(product(range(lang.vocab_size), repeat=4)))
    p_all = lang.log_prob(seqs).exp()
    tv = 0.5 * (np.abs(counts.numpy() / n - exact).sum() + float(p_all.sum()) - exact.sum())
    assert tv < 0.06, tv


def test_bad_grammars_are_refused():
    with pytest.raises(ValueError, match=r"summing to 0\.9"):
        PCFG({"S": [(("a",), 0.9)]})
    with pytest.raises(ValueError, match="not in Chomsky normal form"):
        PCFG({"S": [(("a", "b"), 1.0)]})
    with pytest.raises(ValueError, match="start symbol"):
        PCFG({"A": [(("a",), 1.0)]})
    with pytest.raises(ValueError, match="is a terminal"):
        PCFGLanguage(toy_grammar(), 8, pad="the")
