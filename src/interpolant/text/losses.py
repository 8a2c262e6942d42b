"""Training losses and likelihood bounds for discrete diffusion and autoregressive text models.

All bounds are in nats. Tokens x0 are (B, L) int64 in [0, V); the path is a
:class:`~interpolant.paths.discrete.DiscretePath` with clean probability alpha(t).

Masked (absorbing) diffusion, MDLM eq. 10 / MD4 eq. 5, with the SUBS parameterisation (the
network puts no mass on the mask, and visible tokens are carried over)::

    NELBO(x0) = int_0^1 -alpha'(t) / (1 - alpha(t)) E_{x_t} [ sum_{i: x_t^i = mask}
                -log p_theta(x0^i | x_t) ] dt

Uniform-noise diffusion, q_t(x_t^i | x0^i) = alpha delta + (1 - alpha) / V, is a continuous-time
Markov chain with forward rate beta / V between any two tokens, beta = -alpha' / alpha. Its
evidence bound is the path-space KL between the true and the model's reverse chains (Campbell et
al. 2022; SEDD's denoising score entropy, Lou et al. 2024 eq. 11, written here with an x0
prediction p_theta(. | x_t), as in UDLM)::

    NELBO(x0) = int_0^1 E_{x_t} sum_i sum_{z != y_i} (beta / V) [ s_theta(z) - s(z) log s_theta(z)
                + s(z) log s(z) - s(z) ] dt  +  sum_i KL(q_1(. | x0^i) || Uniform)

with y_i = x_t^i, the true ratio s(z) = q_t(z | x0^i) / q_t(y_i | x0^i) and the model's ratio
s_theta(z) = sum_v p_theta(v | x_t) q_t(z | v) / q_t(y_i | v) = 1 + alpha [p(z) / c
- p(y_i) / (alpha + c)], c = (1 - alpha) / V. With the exact denoiser both bounds are tight: their
expectation over (t, x_t) equals -log p(x0) for every x0 (tests check this by enumeration).

For a time-agnostic masked denoiser the same bound is a sum over the *number* k of masked
tokens (the any-order form of RADD, Ou et al. 2024 eq. 15; with lambda = 1 - alpha(t), the
weight -alpha' / (1 - alpha) dt = d lambda / lambda and the Beta integral
int lambda^(k-1) (1 - lambda)^(L-k) C(L, k) d lambda = 1 / k)::

    NELBO(x0) = sum_{k=1}^{L} (1 / k) E_{S: |S| = k} [ sum_{i in S} -log p_theta(x0^i | x0_S) ]
              = L E_{k ~ U{1..L}} [ (1 / k) sum_{i in S} ... ]                    (count form)

(x0_S: x0 with the positions S masked).

:func:`masked_count_nelbo` estimates this form: every draw masks at least one token and weighs
each masked token by L / k <= L, where the time form's draw masks Binomial(L, t) tokens with
weight 1 / t (a draw at small t masks none, or one with weight ~1 / t). Same expectation, far
lower variance (``estimator="count"``, issue 21: the time form's variance stalled training on
a second-order chain).

The number k need not be uniform: with k ~ p(k) and weight 1 / (k p(k)) on the sum over S the
estimate stays unbiased, ``L E_{k ~ U}[(1/k) sum] = E_{k ~ p}[(1 / (k p(k))) sum]``. Its
variance, for independent per-token terms of mean m and variance s2 (the loss, or one coordinate
of its gradient), is ``sum_k (m^2 + s2 / k) / p(k) - (L m)^2``, smallest (Cauchy-Schwarz) at
``p(k) ∝ sqrt(m^2 + s2 / k)``. For the loss value m^2 dominates and the uniform law is best; for
the gradient, whose per-token noise far exceeds its mean (s2 / m^2 is the gradient-noise scale,
hundreds of tokens or more, > L), the best law is **p(k) ∝ k^(-1/2)**: gradient variance (sum_k
k^(-1/2))^2 s2 against L H_L s2 for the uniform law (0.76x at L = 32; a test measures it at the
optimum, where m = 0). Few-token draws, whose tokens see almost all of their context and carry
the AR-like signal, come up more often, each with a smaller weight.
This is ``estimator="count-sqrt"``, the training default for masked diffusion (measured in
docs/howto/text-diffusion.md).

The autoregressive loss is the exact NLL ``-log p(x)`` of a causal model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..errors import UserError
from ..paths.discrete import DiscretePath
from .base import check_tokens, mask_id

KINDS = ("mask", "uniform", "ar")
ESTIMATORS = ("count-sqrt", "count", "time")
#: The law of the number k of masked tokens of each count estimator.
COUNT_LAWS = {"count-sqrt": "inverse-sqrt", "count": "uniform"}


def subs_log_probs(logits: Tensor, tokens: Tensor) -> Tensor:
    """MDLM's SUBS parameterisation: log p_theta(x0^i | x_t) (B, L, V) in float32, the network's
    log-softmax at masked positions and a point mass on the token at visible ones."""
    vocab = logits.shape[-1]
    logp = torch.log_softmax(logits.float(), -1)
    visible = tokens != mask_id(vocab)
    carry = torch.full_like(logp, -torch.inf)
    carry.scatter_(-1, tokens.clamp_max(vocab - 1)[..., None], 0.0)
    return torch.where(visible[..., None], carry, logp)


def stratified_times(
    n: int, generator: torch.Generator | None = None, device: Any = None
) -> Tensor:
    """n times in (0, 1] (float64), one per stratum ((k + u) / n with a shared uniform u, the
    low-discrepancy sampler of MDLM / VDM): unbiased for U(0, 1], with much lower variance."""
    where = generator.device if generator is not None else device
    u = torch.rand((), generator=generator, dtype=torch.float64, device=where)
    grid = torch.arange(n, dtype=torch.float64, device=where)
    t = 1.0 - torch.remainder(u + grid / n, 1.0)  # in (0, 1]: t = 0 would mask nothing
    return t.to(device) if device is not None else t


def masked_nelbo(
    model: Any,
    x0: Tensor,
    path: DiscretePath,
    t: Tensor,
    generator: torch.Generator | None = None,
    vocab_size: int | None = None,
) -> Tensor:
    """One-sample estimate of the masked-diffusion NELBO (B,) per sequence at times t (B,).
    ``vocab_size`` defaults to the model's ``vocab_size`` attribute."""
    vocab = _vocab(model) if vocab_size is None else vocab_size
    x_t = path.corrupt(x0, t, vocab, generator)
    logp = subs_log_probs(model(x_t, t.to(torch.float32)), x_t)
    nll = -logp.gather(-1, x0[..., None])[..., 0]  # 0 at visible positions (SUBS)
    masked = x_t == mask_id(vocab)
    weight = path.elbo_weight(t).to(nll)  # -alpha'(t) / (1 - alpha(t)), MDLM eq. 10
    return weight * torch.where(masked, nll, torch.zeros_like(nll)).sum(1)


def count_law(length: int, law: str = "uniform") -> Tensor:
    """p(k) (L,) float64 for k = 1..L: "uniform" (1 / L) or "inverse-sqrt" (∝ k^(-1/2), the
    variance-minimising law of the module docstring)."""
    k = torch.arange(1, length + 1, dtype=torch.float64)
    if law == "uniform":
        p = torch.ones_like(k)
    elif law == "inverse-sqrt":
        p = k.rsqrt()
    else:
        raise UserError(f"count law must be 'uniform' or 'inverse-sqrt', got {law!r}")
    return p / p.sum()


def masked_count_nelbo(
    model: Any,
    x0: Tensor,
    u: Tensor,
    generator: torch.Generator | None = None,
    vocab_size: int | None = None,
    law: str = "uniform",
) -> Tensor:
    """One-sample estimate (B,) of the count form of the masked NELBO (module docstring): row b
    masks k_b uniformly chosen positions, k_b the ``law``'s quantile at u_b (u in (0, 1], e.g.
    stratified; the uniform law's is ceil(u_b L)), and scores (1 / (k_b p(k_b))) sum of
    -log p_theta over them (L / k_b for the uniform law). The denoiser must be time-agnostic;
    it is given t = k / L (the expected masking rate)."""
    vocab = _vocab(model) if vocab_size is None else vocab_size
    length = x0.shape[1]
    if law == "uniform":  # exact integer quantile (no cumulative-sum rounding)
        k = torch.ceil(u.to(torch.float64) * length).clamp(1, length).long().to(x0.device)
        scale = length / k.double()
    else:
        pmf = count_law(length, law)
        index = torch.searchsorted(pmf.cumsum(0), u.to(torch.float64).cpu()).clamp_max(length - 1)
        k = (index + 1).to(x0.device)
        scale = (1.0 / ((index + 1).double() * pmf[index])).to(x0.device)
    where = generator.device if generator is not None else x0.device
    keys = torch.rand(x0.shape, generator=generator, dtype=torch.float64, device=where)
    rank = keys.to(x0.device).argsort(1).argsort(1)
    masked = rank < k[:, None]  # k uniformly random positions per row
    x_t = torch.where(masked, torch.full_like(x0, mask_id(vocab)), x0)
    t = (k.double() / length).to(torch.float32)
    logp = subs_log_probs(model(x_t, t), x_t)
    nll = -logp.gather(-1, x0[..., None])[..., 0]
    total = torch.where(masked, nll, torch.zeros_like(nll)).sum(1)
    return total * scale.to(total.dtype)


def uniform_nelbo(
    model: Any,
    x0: Tensor,
    path: DiscretePath,
    t: Tensor,
    generator: torch.Generator | None = None,
    vocab_size: int | None = None,
) -> Tensor:
    """One-sample estimate of the uniform-noise diffusion NELBO (B,) per sequence at times t
    (the module docstring gives the formula); the ratios are computed in float64."""
    vocab = _vocab(model) if vocab_size is None else vocab_size
    x_t = path.corrupt(x0, t, vocab, generator)
    p = torch.softmax(model(x_t, t.to(torch.float32)).double(), -1)  # p_theta(v | x_t)
    alpha = path.alpha(t).double().reshape(-1, 1, 1)
    beta = (-path.d_alpha(t) / path.alpha(t)).double().reshape(-1, 1, 1)
    c = (1.0 - alpha) / vocab
    p_y = p.gather(-1, x_t[..., None])
    # s_theta(z) = 1 + alpha p(z) / c - alpha p(y) / (alpha + c), written without cancellation.
    s_theta = (1.0 - p_y).clamp_min(0.0) + p_y * c / (alpha + c) + alpha * p / c
    onehot_x0 = nn.functional.one_hot(x0, vocab).double()
    q_z = alpha * onehot_x0 + c  # q_t(z | x0)
    s = q_z / q_z.gather(-1, x_t[..., None])
    term = s_theta - s * torch.log(s_theta) + s * torch.log(s) - s
    not_y = 1.0 - nn.functional.one_hot(x_t, vocab).double()
    integrand = (beta / vocab * term * not_y).sum((1, 2))
    return (integrand + prior_kl(path, x0.shape[1], vocab)).to(torch.float32)


def prior_kl(path: DiscretePath, length: int, vocab_size: int) -> float:
    """sum_i KL(q_1(. | x0^i) || Uniform) for uniform noise (0 when alpha(1) = 0)."""
    alpha = float(path.alpha(1.0))
    c = (1.0 - alpha) / vocab_size
    hit = alpha + c
    kl = hit * torch.log(torch.tensor(hit * vocab_size)).item()
    if c > 0:
        kl += (vocab_size - 1) * c * torch.log(torch.tensor(c * vocab_size)).item()
    return length * kl


def ar_nll(model: Any, x0: Tensor) -> Tensor:
    """Exact -log p(x0) (B,) of a causal model whose forward gives next-token logits (called
    through forward, not ``log_prob``, so a DDP-wrapped model synchronises its gradients)."""
    logp = torch.log_softmax(model(x0).float(), -1)
    return -logp.gather(-1, x0[..., None])[..., 0].sum(-1)


class TextObjective:
    """The trainer's objective for token data: ``loss(model, x0, generator) -> scalar``, the
    mean over the batch of the per-token NELBO (``kind`` "mask" or "uniform") or the exact NLL
    per token ("ar"). Times are stratified over the batch (:func:`stratified_times`).

    ``estimator`` (masked diffusion): "count-sqrt" (default; :func:`masked_count_nelbo` with
    k ~ p(k) ∝ k^(-1/2), the lowest-variance law), "count" (k ~ U{1..L}), both for
    time-agnostic denoisers, or "time" (:func:`masked_nelbo`, MDLM eq. 10 as written); all
    estimate the same bound.

    ``integer_data = True`` tells :class:`interpolant.train.Trainer` to accept int64 rows.
    """

    integer_data = True

    def __init__(
        self,
        kind: str,
        vocab_size: int,
        path: DiscretePath | None = None,
        estimator: str = "count-sqrt",
    ):
        if estimator not in ESTIMATORS:
            raise UserError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
        if kind not in KINDS:
            raise UserError(f"kind must be one of {KINDS}, got {kind!r}")
        if kind != "ar" and (path is None or path.kind != kind):
            got = None if path is None else path.kind
            raise UserError(
                f"a {kind!r} objective needs a DiscretePath of kind {kind!r}, got {got}"
            )
        self.kind, self.vocab_size, self.path = kind, int(vocab_size), path
        self.estimator = estimator if kind == "mask" else "time"

    def per_sequence(
        self,
        model: Any,
        x0: Tensor,
        t: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """NELBO (or exact NLL) per sequence (B,) in nats."""
        check_tokens(x0, self.vocab_size, allow_mask=False)
        if self.kind == "ar":
            return ar_nll(model, x0)
        assert self.path is not None
        if t is None:
            t = stratified_times(x0.shape[0], generator, x0.device)
            if self.estimator in COUNT_LAWS:
                law = COUNT_LAWS[self.estimator]
                return masked_count_nelbo(model, x0, t, generator, self.vocab_size, law)
        nelbo = masked_nelbo if self.kind == "mask" else uniform_nelbo
        return nelbo(model, x0, self.path, t, generator, self.vocab_size)

    def loss(
        self,
        model: Any,
        x0: Tensor,
        generator: torch.Generator | None = None,
        cond: dict[str, Any] | None = None,
    ) -> Tensor:
        """Mean per-token NELBO of the batch (the trainer's scalar)."""
        if cond:
            raise UserError("text objectives take no conditioning (cond must be None)")
        return self.per_sequence(model, x0, generator=generator).mean() / x0.shape[1]

    def config(self) -> dict[str, Any]:
        path = None if self.path is None else self.path.config()
        out = {"kind": self.kind, "vocab_size": self.vocab_size, "path": path}
        if self.estimator != "time":  # runs from before the count form keep their config
            out["estimator"] = self.estimator
        return out


@torch.no_grad()
def elbo_nll(
    model: Any,
    tokens: Tensor,
    path: DiscretePath | None = None,
    n_t: int = 16,
    seed: int = 0,
    batch_size: int = 256,
) -> Tensor:
    """An upper bound on the NLL per token (B,) in nats: the NELBO averaged over ``n_t``
    stratified times per sequence (t_k = (k + u_b) / n_t with a uniform u_b per sequence), each
    with a fresh corruption; an unbiased estimate of the bound, whose variance falls like 1/n_t.
    With ``path=None`` the model must be autoregressive (``log_prob``): its exact NLL.

    Use ``exp(mean)`` for the perplexity bound.
    """
    if not isinstance(n_t, int) or n_t < 1:
        raise UserError(f"n_t must be a positive int, got {n_t!r}")
    check_tokens(tokens, _vocab(model), allow_mask=False)
    if path is None:
        if not hasattr(model, "log_prob"):
            raise UserError("elbo_nll of a diffusion model needs its DiscretePath (path=...)")
        return ar_nll(model, tokens).double() / tokens.shape[1]
    device = tokens.device
    gen = torch.Generator(device=device).manual_seed(seed)
    out = []
    for chunk in tokens.split(batch_size):
        total = torch.zeros(chunk.shape[0], dtype=torch.float64, device=device)
        u = torch.rand(chunk.shape[0], generator=gen, dtype=torch.float64, device=device)
        for k in range(n_t):
            t = 1.0 - (k + u) / n_t  # stratum k, in (0, 1]
            nelbo = masked_nelbo if path.kind == "mask" else uniform_nelbo
            total += nelbo(model, chunk, path, t, gen).double()
        out.append(total / n_t / chunk.shape[1])
    return torch.cat(out)


def _vocab(model: Any) -> int:
    """The model's clean vocabulary size (``vocab_size`` attribute, through DDP's ``module``)."""
    vocab = getattr(model, "vocab_size", None)
    if vocab is None:
        vocab = getattr(getattr(model, "module", None), "vocab_size", None)
    if vocab is None:
        raise UserError("the model needs a vocab_size attribute (the number of clean tokens)")
    return int(vocab)
