"""A k-th order Markov-chain language with an exact likelihood and an exact masked denoiser.

The chain over a vocabulary of V tokens has an initial law ``init`` over the first k tokens
(a (V,)*k tensor) and transitions ``trans`` of shape (V,)*k + (V,):
``p(x) = init[x_0..x_{k-1}] prod_{i>=k} trans[x_{i-k}..x_{i-1}, x_i]``.

Lifting to states ``s_i = (x_{i-k+1}, ..., x_i)`` (V**k values, big-endian index) makes it a
first-order chain, so the posterior of every masked position given the visible ones is one
forward-backward pass (Rabiner 1989). That posterior is the exact masked-diffusion denoiser
``p(x_i | x_visible)``; masked diffusion is time-agnostic (seed 7), so ``t`` is ignored.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import UserError
from ..randomness import inverse_cdf
from .base import check_tokens, mask_id


class MarkovLanguage:
    """The k-th order Markov chain ``(init, trans)`` over ``vocab_size`` tokens, sequences of
    length ``length`` (>= order). Probabilities are kept in float64."""

    def __init__(self, init: Tensor, trans: Tensor, length: int) -> None:
        k = init.ndim
        vocab = init.shape[0] if k else 0
        if k < 1 or any(d != vocab for d in init.shape):
            raise UserError(f"init must have shape (V,)*order, got {tuple(init.shape)}")
        if tuple(trans.shape) != (vocab,) * (k + 1):
            raise UserError(f"trans must have shape {(vocab,) * (k + 1)}, got {tuple(trans.shape)}")
        if length < k:
            raise UserError(f"length must be >= order {k}, got {length}")
        init, trans = init.to(torch.float64), trans.to(torch.float64)
        if (init < 0).any() or (trans < 0).any():
            raise UserError("init and trans must be non-negative probabilities")
        if not torch.allclose(init.sum(), torch.tensor(1.0, dtype=torch.float64), atol=1e-9):
            raise UserError(f"init must sum to 1, got {float(init.sum())}")
        if not torch.allclose(trans.sum(-1), torch.ones_like(trans.sum(-1)), atol=1e-9):
            raise UserError("every row trans[context] must sum to 1")
        self.order, self.vocab_size, self.length = k, vocab, int(length)
        self.init, self.trans = init, trans
        self.n_states = vocab**k

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def random(
        cls,
        vocab_size: int,
        length: int,
        order: int = 1,
        concentration: float = 0.1,
        zipf: float | None = None,
        seed: int = 0,
    ) -> MarkovLanguage:
        """A random chain: Dirichlet(``concentration``) transition rows (sparse, strongly
        dependent for small concentration), or Zipf(``zipf``) rows over a random permutation of
        the vocabulary (a heavy tail of rare tokens, where float32 sampling bites)."""
        if vocab_size < 2 or order < 1:
            raise UserError(f"need vocab_size >= 2 and order >= 1, got {vocab_size}, {order}")
        gen = torch.Generator().manual_seed(seed)
        n_ctx = vocab_size**order
        if zipf is None:
            conc = torch.full((vocab_size,), float(concentration), dtype=torch.float64)
            gamma = torch.distributions.Gamma(conc, torch.ones_like(conc))
            torch.manual_seed(seed)  # Gamma has no generator argument: seed the global one
            rows = gamma.sample((n_ctx,)).clamp_min(1e-300)
        else:
            ranks = torch.arange(1, vocab_size + 1, dtype=torch.float64) ** (-float(zipf))
            perms = torch.stack([torch.randperm(vocab_size, generator=gen) for _ in range(n_ctx)])
            rows = ranks[perms]
        rows = rows / rows.sum(-1, keepdim=True)
        init = torch.full((vocab_size,) * order, 1.0 / n_ctx, dtype=torch.float64)
        return cls(init, rows.reshape((vocab_size,) * (order + 1)), length)

    # -- the law -------------------------------------------------------------------------------

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` sequences (n, length) drawn from the chain (float64 inverse-CDF draws)."""
        k, vocab = self.order, self.vocab_size
        u = torch.rand(n, self.length - k + 1, generator=generator, dtype=torch.float64)
        first = inverse_cdf(self.init.reshape(1, -1).expand(n, -1), u[:, 0])
        digits = [(first // vocab ** (k - 1 - j)) % vocab for j in range(k)]
        state = first
        flat = self.trans.reshape(self.n_states, vocab)
        for i in range(1, self.length - k + 1):
            nxt = inverse_cdf(flat[state], u[:, i])
            digits.append(nxt)
            state = (state * vocab + nxt) % self.n_states
        return torch.stack(digits, 1)

    def log_prob(self, tokens: Tensor) -> Tensor:
        """Exact log p(x) of clean sequences (B, length) -> (B,) float64."""
        check_tokens(tokens, self.vocab_size, allow_mask=False)
        if tokens.shape[1] != self.length:
            raise UserError(f"tokens must have length {self.length}, got {tokens.shape[1]}")
        k = self.order
        logp = self.init[tuple(tokens[:, j] for j in range(k))].log()
        for i in range(k, self.length):
            logp = logp + self.trans[tuple(tokens[:, i - k + j] for j in range(k + 1))].log()
        return logp

    def entropy_rate(self) -> float:
        """Entropy rate in nats/token: sum_s pi(s) H(trans[s]) with pi the stationary law of the
        lifted chain (power iteration from ``init``, averaged to handle periodic chains)."""
        flat = self.trans.reshape(self.n_states, self.vocab_size)
        pi = self.init.reshape(-1)
        avg = torch.zeros_like(pi)
        for _ in range(2000):
            pi = self._push(pi[None])[0]
            avg += pi
        avg /= avg.sum()
        return float((avg * _row_entropy(flat)).sum())

    def sequence_entropy(self) -> float:
        """Exact entropy H(X) in nats of a whole sequence of ``length`` tokens."""
        flat = self.trans.reshape(self.n_states, self.vocab_size)
        pi = self.init.reshape(-1)
        h = float(-(pi[pi > 0] * pi[pi > 0].log()).sum())
        row_h = _row_entropy(flat)
        for _ in range(self.length - self.order):
            h += float((pi * row_h).sum())
            pi = self._push(pi[None])[0]
        return h

    def _push(self, state_probs: Tensor) -> Tensor:
        """One lifted-chain step of a (B, V**k) law of states (unnormalised weights allowed)."""
        vocab, rest = self.vocab_size, self.n_states // self.vocab_size
        trans = self.trans.reshape(vocab, rest, vocab)
        out = torch.einsum("bfr,frv->brv", state_probs.reshape(-1, vocab, rest), trans)
        return out.reshape(-1, self.n_states)

    def _pull(self, beta: Tensor) -> Tensor:
        """Backward step: beta_i[s] = sum_v trans[s, v] beta_{i+1}[shift(s, v)]."""
        vocab, rest = self.vocab_size, self.n_states // self.vocab_size
        trans = self.trans.reshape(vocab, rest, vocab)
        return torch.einsum("frv,brv->bfr", trans, beta.reshape(-1, rest, vocab)).reshape(
            -1, self.n_states
        )

    # -- the exact denoiser --------------------------------------------------------------------

    def _forward(self, tokens: Tensor) -> tuple[list[Tensor], Tensor]:
        """Forward pass over lifted states for (B, L) ids in [0, V] (V = mask): the normalised
        messages fwd[i] ∝ P(s_i, visible x[:i+1]) at positions k-1 .. L-1, and log P(visible
        tokens) (B,) float64 from their normalisers (-inf for impossible visible tokens)."""
        check_tokens(tokens, self.vocab_size)
        if tokens.shape[1] != self.length:
            raise UserError(f"tokens must have length {self.length}, got {tokens.shape[1]}")
        k, digits = self.order, _state_digits(self.vocab_size, self.order)
        # States at position k-1 must agree with all of the first k tokens.
        weights = self.init.reshape(1, -1).expand(tokens.shape[0], -1)
        for j in range(k):
            weights = weights * _agrees(tokens, self.vocab_size, digits, j, j)
        fwd: list[Tensor] = []
        log_z = torch.zeros(tokens.shape[0], dtype=torch.float64)
        for i in range(k, self.length + 1):
            log_z = log_z + weights.sum(-1).log()
            fwd.append(_normalise(weights))
            if i < self.length:
                weights = self._push(fwd[-1]) * _agrees(tokens, self.vocab_size, digits, i, -1)
        return fwd, log_z

    def posterior(self, tokens: Tensor) -> Tensor:
        """p(x_i = v | visible tokens) for every position: (B, L) ids in [0, V] (V = mask) ->
        (B, L, V) float64. Visible positions get a one-hot. Forward-backward over lifted states
        with per-step normalisation."""
        fwd, _ = self._forward(tokens)
        k, vocab, length = self.order, self.vocab_size, self.length
        digits = _state_digits(vocab, k)
        # Backward pass: bwd[i] ∝ P(x_visible[i+1:] | s_i).
        bwd = [torch.ones_like(fwd[-1])]
        for i in range(length - 1, k - 1, -1):
            bwd.append(_normalise(self._pull(bwd[-1] * _agrees(tokens, vocab, digits, i, -1))))
        bwd.reverse()
        # State posteriors at positions k-1 .. L-1; read off the last (or j-th) digit.
        post = [_normalise(f * b) for f, b in zip(fwd, bwd, strict=True)]
        out = torch.empty(tokens.shape[0], length, vocab, dtype=torch.float64)
        onehot = torch.eye(vocab, dtype=torch.float64)
        for j in range(k):
            out[:, j] = post[0] @ onehot[digits[:, j]]
        for i in range(k, length):
            out[:, i] = post[i - k + 1] @ onehot[digits[:, -1]]
        return out

    def log_marginal(self, tokens: Tensor) -> Tensor:
        """log P(visible tokens) of (B, L) ids in [0, V] (V = mask) -> (B,) float64: the
        normalisers of :meth:`posterior`'s forward pass (0 when all are masked, log p(x) when
        none are; -inf for impossible visible tokens)."""
        return self._forward(tokens)[1]

    def __call__(self, tokens: Tensor, t: Tensor | None = None) -> Tensor:
        """The exact denoiser as logits (B, L, V) = log posterior (float64; -inf = impossible)."""
        return self.posterior(tokens).log()

    def config(self) -> dict[str, object]:
        return {"name": "markov", "order": self.order, "vocab_size": self.vocab_size}

    def __repr__(self) -> str:
        k, v, n = self.order, self.vocab_size, self.length
        return f"MarkovLanguage(order={k}, vocab_size={v}, length={n})"


def _row_entropy(rows: Tensor) -> Tensor:
    """Entropy of every row of a (N, V) stochastic matrix (0 log 0 = 0)."""
    return -torch.where(rows > 0, rows * rows.clamp_min(1e-300).log(), torch.zeros_like(rows)).sum(
        -1
    )


def _agrees(tokens: Tensor, vocab: int, digits: Tensor, position: int, digit: int) -> Tensor:
    """(B, V**k) float64: 1 where digit ``digit`` of the state matches the token at ``position``
    (or that token is masked)."""
    token = tokens[:, position, None]
    return ((token == mask_id(vocab)) | (digits[None, :, digit] == token)).to(torch.float64)


def _normalise(w: Tensor) -> Tensor:
    """Rows scaled to sum to 1; an all-zero row (visible tokens of probability 0) -> uniform."""
    z = w.sum(-1, keepdim=True)
    return torch.where(z > 0, w / z.clamp_min(1e-300), torch.full_like(w, 1.0 / w.shape[-1]))


def _state_digits(vocab: int, order: int) -> Tensor:
    """(V**k, k) table of the tokens making up each lifted state (big-endian)."""
    s = torch.arange(vocab**order)
    return torch.stack([(s // vocab ** (order - 1 - j)) % vocab for j in range(order)], 1)


def all_sequences(vocab_size: int, length: int) -> Tensor:
    """Every sequence of ``length`` tokens over ``vocab_size`` (vocab**length, length), in
    lexicographic order (so row r is r written in base ``vocab_size``)."""
    if vocab_size**length > 2_000_000:
        raise UserError(f"{vocab_size}**{length} sequences is too many to enumerate")
    return _state_digits(vocab_size, length)


def sequence_index(tokens: Tensor, vocab_size: int) -> Tensor:
    """Row index of each sequence in :func:`all_sequences` (base-``vocab_size`` number)."""
    weights = vocab_size ** torch.arange(tokens.shape[1] - 1, -1, -1)
    return (tokens * weights).sum(1)


class UnigramLanguage:
    """Order 0: every token i.i.d. from ``probs`` (V,). Its exact masked denoiser is ``probs``
    at every position whatever is visible (a cheap oracle for large vocabularies)."""

    def __init__(self, probs: Tensor, length: int) -> None:
        probs = probs.to(torch.float64)
        if probs.ndim != 1 or (probs < 0).any() or abs(float(probs.sum()) - 1.0) > 1e-9:
            raise UserError("probs must be a (V,) probability vector")
        if length < 1:
            raise UserError(f"length must be >= 1, got {length}")
        self.probs, self.length, self.vocab_size = probs, int(length), int(probs.numel())

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        u = torch.rand(n * self.length, generator=generator, dtype=torch.float64)
        return inverse_cdf(self.probs.expand(u.numel(), -1), u).reshape(n, self.length)

    def log_prob(self, tokens: Tensor) -> Tensor:
        check_tokens(tokens, self.vocab_size, allow_mask=False)
        return self.probs.log()[tokens].sum(1)

    def sequence_entropy(self) -> float:
        p = self.probs[self.probs > 0]
        return float(-(p * p.log()).sum()) * self.length

    def __call__(self, tokens: Tensor, t: Tensor | None = None) -> Tensor:
        check_tokens(tokens, self.vocab_size)
        return self.probs.log().expand(*tokens.shape, -1)
