"""Metrics for generated token sequences (seed 7: always report entropy next to likelihood).

* :func:`true_nll`: per-token negative log-likelihood of samples under the true process (a
  language with ``log_prob``, e.g. :class:`~interpolant.text.markov.MarkovLanguage`): the
  exact "generative perplexity" of a synthetic language, ``exp`` of it being gen-PPL.
* :func:`token_entropy`: entropy of the unigram frequencies of the samples (nats); a sampler
  that lowers the temperature lowers it.
* :func:`ngram_table`, :func:`ngram_tv`: n-gram frequency tables and their total variation.
* :func:`exact_tv`: total variation between the samples' empirical law and an exact law over
  all sequences (tiny vocabularies and lengths), with a chi-square statistic.
* :func:`json_validity`, :func:`field_accuracy`: structured-output checks for S3.
* :func:`tokens_per_second`.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from ..errors import UserError
from .base import check_tokens


def true_nll(samples: Tensor, log_prob: Callable[[Tensor], Tensor]) -> float:
    """Mean over samples of -log p(x) / L in nats per token, p the true process.

    The whole sequence's likelihood over all L tokens, the first ones' term included (for a
    k-th order chain, -log init(x_1..x_k) too), so it compares with
    ``sequence_entropy() / L`` (what ``train text`` records as ``entropy_per_token``) and with
    the bounds of ``text.losses``, not with a per-token entropy rate that skips the first
    tokens (e.g. tokens 2..L only)."""
    check_tokens(samples, int(samples.max()) + 1, allow_mask=False)
    return float(-log_prob(samples).to(torch.float64).mean() / samples.shape[1])


def zero_probability_fraction(samples: Tensor, log_prob: Callable[[Tensor], Tensor]) -> float:
    """Fraction of samples with probability 0 under the true process (an impossible n-gram)."""
    return float(torch.isneginf(log_prob(samples)).to(torch.float64).mean())


def token_entropy(samples: Tensor, vocab_size: int) -> float:
    """Entropy (nats) of the unigram frequencies of all tokens in ``samples``."""
    check_tokens(samples, vocab_size, allow_mask=False)
    counts = torch.bincount(samples.reshape(-1), minlength=vocab_size).to(torch.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


def ngram_table(samples: Tensor, n: int) -> Counter[tuple[int, ...]]:
    """Counts of every n-gram (within each sequence) in ``samples`` (B, L)."""
    if n < 1 or n > samples.shape[1]:
        raise UserError(f"n must lie in [1, {samples.shape[1]}], got {n}")
    windows = samples.unfold(1, n, 1).reshape(-1, n).tolist()
    return Counter(tuple(w) for w in windows)


def table_tv(a: Mapping[tuple[int, ...], float], b: Mapping[tuple[int, ...], float]) -> float:
    """Total variation between two (unnormalised) frequency tables."""
    za, zb = float(sum(a.values())), float(sum(b.values()))
    if za <= 0 or zb <= 0:
        raise UserError("frequency tables must have positive mass")
    keys = set(a) | set(b)
    return 0.5 * sum(abs(a.get(k, 0.0) / za - b.get(k, 0.0) / zb) for k in keys)


def ngram_tv(samples: Tensor, reference: Tensor, n: int = 2) -> float:
    """Total variation between the n-gram frequency tables of ``samples`` and ``reference``."""
    return table_tv(ngram_table(samples, n), ngram_table(reference, n))


def exact_tv(samples: Tensor, probs: Tensor, vocab_size: int) -> tuple[float, float]:
    """(TV, chi-square) between the empirical law of ``samples`` and ``probs`` over all
    ``vocab_size ** L`` sequences in lexicographic order. The chi-square statistic sums over
    sequences of positive probability (a sample of probability 0 makes it infinite)."""
    weights = vocab_size ** torch.arange(samples.shape[1] - 1, -1, -1)
    index = (samples * weights).sum(1)
    n = samples.shape[0]
    counts = torch.bincount(index, minlength=probs.numel()).to(torch.float64)
    probs = probs.to(torch.float64)
    tv = 0.5 * float((counts / n - probs).abs().sum())
    if bool(((probs <= 0) & (counts > 0)).any()):
        return tv, math.inf
    pos = probs > 0
    chi2 = float(((counts[pos] - n * probs[pos]) ** 2 / (n * probs[pos])).sum())
    return tv, chi2


def json_validity(texts: Sequence[str], validate: Callable[[Any], bool] | None = None) -> float:
    """Fraction of ``texts`` that parse as JSON (and pass ``validate`` when given)."""
    if not texts:
        raise UserError("texts must not be empty")
    ok = 0
    for text in texts:
        try:
            obj = json.loads(text)
        except (json.JSONDecodeError, TypeError):
            continue
        ok += 1 if validate is None or validate(obj) else 0
    return ok / len(texts)


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """{"a.b": value} for nested objects."""
    if not isinstance(obj, dict):
        return {prefix: obj}
    out: dict[str, Any] = {}
    for k, v in obj.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def field_accuracy(texts: Sequence[str], references: Sequence[Mapping[str, Any]]) -> float:
    """Mean over (text, reference) pairs of the fraction of the reference's (flattened) fields
    that the parsed text reproduces exactly; an unparseable text scores 0."""
    if len(texts) != len(references) or not texts:
        raise UserError(
            f"need equal, non-zero numbers of texts and references, got "
            f"{len(texts)} and {len(references)}"
        )
    total = 0.0
    for text, ref in zip(texts, references, strict=True):
        flat_ref = _flatten(dict(ref))
        try:
            got = json.loads(text)
        except (json.JSONDecodeError, TypeError):
            continue
        flat_got = _flatten(got) if isinstance(got, dict) else {}
        total += sum(flat_got.get(k, object()) == v for k, v in flat_ref.items()) / max(
            len(flat_ref), 1
        )
    return total / len(texts)


def tokens_per_second(n_tokens: int, wall_s: float) -> float:
    """Throughput; ``inf`` for a zero wall time."""
    if n_tokens < 0 or wall_s < 0:
        raise UserError(f"need n_tokens >= 0 and wall_s >= 0, got {n_tokens}, {wall_s}")
    return math.inf if wall_s == 0 else n_tokens / wall_s
