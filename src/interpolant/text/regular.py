"""Regular languages with an exact masked denoiser: weighted automata built from fragments.

A language is written with three combinators over token strings: :meth:`Automaton.literal`
(a fixed string), :meth:`Automaton.choice` (a weighted choice among fragments) and
:meth:`Automaton.seq` (concatenation), plus :meth:`Automaton.padded` (a fragment followed by
0..W pad tokens, each further pad with probability ``p``). Every automaton state emits one token,
so a sequence of fixed length L (the fragment, then trailing pads up to L) is a path of L states
and p(x) is the product of the weights along it, renormalised over sequences of length L.

The exact masked denoiser p(x_i | visible tokens) is forward-backward on the (sparse) state
graph, like :class:`~interpolant.text.markov.MarkovLanguage`; it is exact for any language the
combinators can write (here: JSON records for S3, seed 29).
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import UserError
from .base import check_tokens, mask_id


@dataclass(frozen=True)
class Fragment:
    """Entry states with their weights, and exit states with the weight of leaving. A fragment
    owns its states: use each fragment once (build a fresh one for every occurrence)."""

    first: tuple[tuple[int, float], ...]
    last: tuple[tuple[int, float], ...]


class Automaton:
    """A builder of weighted automata whose states each emit one token id in [0, V)."""

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = int(vocab_size)
        self.emit: list[int] = []
        self.edges: dict[tuple[int, int], float] = {}

    def _state(self, token: int) -> int:
        if not 0 <= token < self.vocab_size:
            raise UserError(f"token ids must lie in [0, {self.vocab_size}), got {token}")
        self.emit.append(int(token))
        return len(self.emit) - 1

    def _link(self, a: Fragment, b: Fragment) -> None:
        for src, w_out in a.last:
            for dst, w_in in b.first:
                self.edges[(src, dst)] = self.edges.get((src, dst), 0.0) + w_out * w_in

    def literal(self, tokens: list[int]) -> Fragment:
        """The fixed string ``tokens`` (non-empty)."""
        if not tokens:
            raise UserError("a literal needs at least one token")
        states = [self._state(t) for t in tokens]
        for a, b in itertools.pairwise(states):
            self.edges[(a, b)] = 1.0
        return Fragment(((states[0], 1.0),), ((states[-1], 1.0),))

    def choice(self, options: list[Fragment], weights: list[float] | None = None) -> Fragment:
        """One of ``options`` with probability proportional to ``weights`` (default equal)."""
        if not options:
            raise UserError("a choice needs at least one option")
        w = [1.0] * len(options) if weights is None else [float(x) for x in weights]
        if len(w) != len(options) or min(w) < 0 or sum(w) <= 0:
            raise UserError("weights must be non-negative, one per option, not all zero")
        total = sum(w)
        first = tuple((s, ws * wi / total) for o, wi in zip(options, w, strict=True)
                      for s, ws in o.first)  # fmt: skip
        last = tuple(pair for o in options for pair in o.last)
        return Fragment(first, last)

    def seq(self, parts: list[Fragment]) -> Fragment:
        """The concatenation of ``parts``."""
        if not parts:
            raise UserError("a sequence needs at least one part")
        for a, b in itertools.pairwise(parts):
            self._link(a, b)
        return Fragment(parts[0].first, parts[-1].last)

    def padded(self, part: Fragment, pad: int, max_pads: int, p: float = 0.5) -> Fragment:
        """``part`` followed by k pad tokens, 0 <= k <= ``max_pads``: after the part and after
        each pad another pad follows with probability ``p``."""
        if max_pads < 0 or not 0.0 <= p < 1.0:
            raise UserError(f"need max_pads >= 0 and 0 <= p < 1, got {max_pads}, {p}")
        if max_pads == 0:
            return part
        pads = [self._state(pad) for _ in range(max_pads)]
        for src, w_out in part.last:
            self.edges[(src, pads[0])] = w_out * p
        for a, b in itertools.pairwise(pads):
            self.edges[(a, b)] = p
        last = tuple((s, w * (1.0 - p)) for s, w in part.last)
        last += (*tuple((s, 1.0 - p) for s in pads[:-1]), (pads[-1], 1.0))
        return Fragment(part.first, last)

    def language(self, root: Fragment, length: int, pad: int) -> RegularLanguage:
        """Sequences of exactly ``length`` tokens: ``root`` then trailing ``pad`` tokens."""
        trailing = self._state(pad)
        self.edges[(trailing, trailing)] = 1.0
        final = {s for s, _ in root.last} | {trailing}
        for s, w in root.last:
            self.edges[(s, trailing)] = self.edges.get((s, trailing), 0.0) + w
        return RegularLanguage(self, root, final, length)


class RegularLanguage:
    """The law of length-``length`` paths of an :class:`Automaton`, with the exact denoiser."""

    def __init__(self, auto: Automaton, root: Fragment, final: set[int], length: int) -> None:
        n = len(auto.emit)
        self.vocab_size, self.length, self.n_states = auto.vocab_size, int(length), n
        src = torch.tensor([k[0] for k in auto.edges], dtype=torch.long)
        dst = torch.tensor([k[1] for k in auto.edges], dtype=torch.long)
        w = torch.tensor(list(auto.edges.values()), dtype=torch.float64)
        # Forward uses T^T (dst <- src), backward uses T (src <- dst).
        self.trans_t = _sparse(dst, src, w, n)
        self.trans = _sparse(src, dst, w, n)
        self.init = torch.zeros(n, dtype=torch.float64)
        for s, weight in root.first:
            self.init[s] += weight
        self.final = torch.zeros(n, dtype=torch.float64)
        self.final[sorted(final)] = 1.0
        self.emit = torch.tensor(auto.emit, dtype=torch.long)

    def _allowed(self, column: Tensor) -> Tensor:
        """(S, B) bool: the state's token agrees with a column of tokens (mask = anything)."""
        return (column == mask_id(self.vocab_size))[None, :] | (self.emit[:, None] == column)

    def _backward(self, tokens: Tensor) -> list[Tensor]:
        """Normalised backward messages (S, B) at every position: P(visible after i | s_i)."""
        bwd = [self.final[:, None].expand(-1, tokens.shape[0])]
        for i in range(self.length - 1, 0, -1):
            msg = torch.sparse.mm(self.trans, bwd[-1] * self._allowed(tokens[:, i]))
            bwd.append(msg / msg.sum(0, keepdim=True).clamp_min(1e-300))
        bwd.reverse()
        return bwd

    def _forward(self, tokens: Tensor, bwd: list[Tensor] | None) -> tuple[Tensor, Tensor]:
        """Forward pass: token posteriors (B, L, V) when ``bwd`` is given (else empty) and the
        log path weight of the visible tokens summed over paths (B,)."""
        batch = tokens.shape[0]
        out = torch.zeros(self.length, self.vocab_size, batch, dtype=torch.float64)
        log_z = torch.zeros(batch, dtype=torch.float64)
        fwd = self.init[:, None] * self._allowed(tokens[:, 0])
        for i in range(self.length):
            if i > 0:
                fwd = torch.sparse.mm(self.trans_t, fwd) * self._allowed(tokens[:, i])
            if bwd is not None:
                out[i].index_add_(0, self.emit, fwd * bwd[i])  # sum states by token
            if i < self.length - 1:
                z = fwd.sum(0, keepdim=True)
                log_z += z[0].log()  # -inf once the visible tokens are impossible
                fwd = fwd / z.clamp_min(1e-300)
        log_z += (fwd * self.final[:, None]).sum(0).log()
        return out.permute(2, 0, 1), log_z

    def posterior(self, tokens: Tensor, chunk: int = 64) -> Tensor:
        """p(x_i = v | visible tokens), (B, L) ids in [0, V] -> (B, L, V) float64 (uniform rows
        where the visible tokens are impossible); ``chunk`` rows at a time."""
        check_tokens(tokens, self.vocab_size)
        if tokens.shape[1] != self.length:
            raise UserError(f"tokens must have length {self.length}, got {tokens.shape[1]}")
        parts = []
        for rows in tokens.split(chunk):
            parts.append(self._forward(rows, self._backward(rows))[0])
        out = torch.cat(parts) if parts else torch.zeros(0, self.length, self.vocab_size)
        z = out.sum(-1, keepdim=True)
        return torch.where(z > 0, out / z.clamp_min(1e-300), 1.0 / self.vocab_size)

    def log_weight(self, tokens: Tensor) -> Tensor:
        """Log of the total path weight of clean sequences (-inf outside the language): the
        log-likelihood up to the constant log Z_L of length-L normalisation."""
        check_tokens(tokens, self.vocab_size, allow_mask=False)
        return self._forward(tokens, None)[1]

    def __call__(self, tokens: Tensor, t: Tensor | None = None) -> Tensor:
        """The exact denoiser as logits (B, L, V)."""
        return self.posterior(tokens).log()


def _sparse(rows: Tensor, cols: Tensor, values: Tensor, n: int) -> Tensor:
    """An (n, n) sparse CSR matrix (entries are valid by construction)."""
    coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (n, n),
                                  check_invariants=False)  # fmt: skip
    with warnings.catch_warnings():  # CSR support is "beta" in torch; we use only mm
        warnings.simplefilter("ignore", UserWarning)
        return coo.coalesce().to_sparse_csr()
