"""A probabilistic context-free grammar language with exact likelihoods (seed papers 7, 31).

A PCFG in Chomsky normal form has rules ``A -> B C`` (two nonterminals) and ``A -> a`` (one
terminal), each with a probability; the rules of one left-hand side sum to 1. The probability of
a string is the sum over its parse trees of the product of their rule probabilities, computed
exactly by the inside algorithm (Baker 1979; Lari & Young 1990):

    beta(i, i+1, A) = p(A -> w_i)
    beta(i, j, A)   = sum_{A -> B C} sum_{i<k<j} p(A -> B C) beta(i, k, B) beta(k, j, C)
    p(w) = beta(0, n, S)

For fixed-length diffusion, :class:`PCFGLanguage` conditions on ``len(w) <= length`` and pads with
a pad token: ``p(w + pad^(L-n)) = p(w) / P(len <= L)``, where ``P(len = n)`` comes from the same
recursion with every terminal replaced by a wildcard. So the language's per-token entropy is known
exactly (by Monte Carlo over exact log-probabilities).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import UserError

Rules = Mapping[str, Sequence[tuple[Sequence[str], float]]]


class PCFG:
    """A PCFG in Chomsky normal form.

    Args:
        rules: ``{lhs: [(rhs, prob), ...]}``; ``rhs`` is ``(B, C)`` with B, C nonterminals (keys
            of ``rules``) or ``(a,)`` with ``a`` a terminal (any other symbol).
        start: the start symbol.
    """

    def __init__(self, rules: Rules, start: str = "S", tol: float = 1e-9):
        if start not in rules:
            raise UserError(f"start symbol {start!r} has no rules")
        self.start = start
        self.nonterminals = list(rules)
        index = {a: k for k, a in enumerate(self.nonterminals)}
        terminals: list[str] = []
        binary, unary = [], []
        for lhs, alternatives in rules.items():
            total = sum(float(p) for _, p in alternatives)
            if abs(total - 1.0) > tol:
                raise UserError(f"rules of {lhs!r} have probabilities summing to {total}, not 1")
            for rhs, prob in alternatives:
                if not prob > 0:
                    raise UserError(f"rule {lhs} -> {' '.join(rhs)} has probability {prob} <= 0")
                if len(rhs) == 2 and all(s in index for s in rhs):
                    binary.append((index[lhs], index[rhs[0]], index[rhs[1]], float(prob)))
                elif len(rhs) == 1 and rhs[0] not in index:
                    if rhs[0] not in terminals:
                        terminals.append(rhs[0])
                    unary.append((index[lhs], rhs[0], float(prob)))
                else:
                    raise UserError(
                        f"rule {lhs} -> {' '.join(rhs)} is not in Chomsky normal form "
                        "(A -> B C with nonterminals or A -> a with one terminal)"
                    )
        self.terminals = terminals
        self._tindex = {a: k for k, a in enumerate(terminals)}
        n_a, n_t = len(self.nonterminals), len(terminals)
        self.emit = np.zeros((n_a, n_t))  # p(A -> a)
        for a, term, prob in unary:
            self.emit[a, self._tindex[term]] += prob
        self.binary = np.array([r[:3] for r in binary], dtype=np.int64).reshape(-1, 3)
        self.binary_prob = np.array([r[3] for r in binary], dtype=np.float64)
        self._rules = {k: [(tuple(r), float(p)) for r, p in v] for k, v in rules.items()}

    # --- exact probabilities --------------------------------------------------------------------
    def inside(self, symbols: Sequence[str]) -> np.ndarray:
        """The inside table ``beta[i, j, A] = p(A =>* w_i..w_{j-1})`` (float64, zeros below the
        diagonal); every symbol must be a terminal."""
        n = len(symbols)
        unknown = [(k, s) for k, s in enumerate(symbols) if s not in self._tindex]
        if unknown:
            raise UserError(f"non-terminal-symbol input (position, symbol): {unknown}")
        beta = np.zeros((n + 1, n + 1, len(self.nonterminals)))
        for i, sym in enumerate(symbols):
            beta[i, i + 1] = self.emit[:, self._tindex[sym]]
        lhs, left, right = self.binary.T
        for span in range(2, n + 1):
            for i in range(0, n - span + 1):
                j = i + span
                # sum over split points k of beta(i,k,B) beta(k,j,C), one column per rule
                inner = (beta[i, i + 1 : j][:, left] * beta[i + 1 : j, j][:, right]).sum(0)
                np.add.at(beta[i, j], lhs, self.binary_prob * inner)
        return beta

    def log_prob(self, symbols: Sequence[str]) -> float:
        """log p(w) of a terminal string (``-inf`` if the grammar cannot derive it)."""
        if len(symbols) == 0:
            return -math.inf  # CNF derives no empty string
        p = self.inside(symbols)[0, len(symbols), self.nonterminals.index(self.start)]
        return math.log(p) if p > 0 else -math.inf

    def length_probs(self, max_length: int) -> np.ndarray:
        """``P(len(w) = n)`` for n = 0..max_length (float64): the inside recursion on lengths."""
        n_a = len(self.nonterminals)
        by_len = np.zeros((max_length + 1, n_a))  # by_len[n, A] = P(A derives n terminals)
        if max_length >= 1:
            by_len[1] = self.emit.sum(1)
        lhs, left, right = self.binary.T
        for n in range(2, max_length + 1):
            inner = (by_len[1:n][:, left] * by_len[n - 1 : 0 : -1][:, right]).sum(0)
            np.add.at(by_len[n], lhs, self.binary_prob * inner)
        return by_len[:, self.nonterminals.index(self.start)]

    # --- sampling -------------------------------------------------------------------------------
    def sample(self, generator: torch.Generator | None = None, max_length: int = 64) -> list[str]:
        """One string from the grammar conditioned on ``len <= max_length`` (rejection: a
        derivation is abandoned as soon as it must exceed ``max_length`` terminals)."""
        for _ in range(100_000):
            out = self._try_sample(generator, max_length)
            if out is not None:
                return out
        raise RuntimeError(f"no string of length <= {max_length} in 100000 tries")

    def _try_sample(self, generator: torch.Generator | None, max_length: int) -> list[str] | None:
        out: list[str] = []
        stack = [self.start]  # leftmost derivation; each pending nonterminal yields >= 1 terminal
        while stack:
            if len(out) + len(stack) > max_length:
                return None
            sym = stack.pop()
            alternatives = self._rules[sym]
            u = float(torch.rand((), generator=generator, dtype=torch.float64))
            k = int(np.searchsorted(np.cumsum([p for _, p in alternatives]), u, side="right"))
            rhs = alternatives[min(k, len(alternatives) - 1)][0]
            if len(rhs) == 1:
                out.append(rhs[0])
            else:
                stack.extend(reversed(rhs))
        return out

    def __repr__(self) -> str:
        return (
            f"PCFG({len(self.nonterminals)} nonterminals, {len(self.terminals)} terminals, "
            f"{len(self.binary_prob)} binary rules)"
        )


def toy_grammar() -> PCFG:
    """A small English-like grammar (12 words, recursive noun phrases via 'that' clauses and
    prepositions) whose strings have agreement-free but long-range structure."""
    rules: dict[str, list[tuple[tuple[str, ...], float]]] = {
        "S": [(("NP", "VP"), 1.0)],
        "NP": [(("Det", "N"), 0.6), (("NP", "PP"), 0.15), (("NP", "RC"), 0.1), (("she",), 0.15)],
        "VP": [(("V", "NP"), 0.55), (("VP", "PP"), 0.15), (("sleeps",), 0.3)],
        "PP": [(("P", "NP"), 1.0)],
        "RC": [(("That", "VP"), 1.0)],
        "That": [(("that",), 1.0)],
        "Det": [(("the",), 0.6), (("a",), 0.4)],
        "N": [(("cat",), 0.4), (("dog",), 0.35), (("park",), 0.25)],
        "V": [(("sees",), 0.6), (("likes",), 0.4)],
        "P": [(("in",), 0.5), (("near",), 0.5)],
    }
    return PCFG(rules)


class PCFGLanguage:
    """Fixed-length token sequences from a PCFG: ``ids(w) + [pad] * (length - len(w))`` with
    ``w ~ PCFG | len(w) <= length``. Token ids are the terminals' indices, then ``pad``.

    ``log_prob`` is exact; a sequence with a pad before a word has probability 0.
    """

    def __init__(self, grammar: PCFG, length: int, pad: str = "<pad>"):
        if not isinstance(length, int) or length < 1:
            raise UserError(f"length must be a positive int, got {length!r}")
        if pad in grammar.terminals:
            raise UserError(f"pad {pad!r} is a terminal of the grammar")
        self.grammar, self.length, self.pad = grammar, length, pad
        self.words = [*grammar.terminals, pad]
        self.vocab_size = len(self.words)
        self.pad_id = self.vocab_size - 1
        total = float(grammar.length_probs(length)[1:].sum())
        if not total > 0:
            raise UserError(f"the grammar derives no string of length <= {length}")
        self.log_norm = math.log(total)  # log P(len <= length)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """(n, length) int64 token ids."""
        rows = []
        for _ in range(n):
            words = self.grammar.sample(generator, self.length)
            ids = [self.grammar._tindex[w] for w in words]
            rows.append(ids + [self.pad_id] * (self.length - len(ids)))
        return torch.tensor(rows, dtype=torch.long).reshape(n, self.length)

    def log_prob(self, tokens: Tensor) -> Tensor:
        """Exact log-probabilities (B,) float64 of (B, length) token sequences."""
        if tokens.ndim != 2 or tokens.shape[1] != self.length:
            raise UserError(f"tokens must have shape (batch, {self.length}), got {tokens.shape}")
        out = torch.empty(tokens.shape[0], dtype=torch.float64)
        for b, row in enumerate(tokens.tolist()):
            n = row.index(self.pad_id) if self.pad_id in row else self.length
            if any(t != self.pad_id for t in row[n:]) or n == 0:
                out[b] = -math.inf
                continue
            out[b] = self.grammar.log_prob([self.words[t] for t in row[:n]]) - self.log_norm
        return out

    def decode(self, tokens: Tensor) -> list[str]:
        """Space-joined words of each row, pads dropped."""
        return [" ".join(self.words[t] for t in row if t != self.pad_id) for row in tokens.tolist()]

    def config(self) -> dict[str, Any]:
        return {"name": "pcfg", "length": self.length, "pad": self.pad}
