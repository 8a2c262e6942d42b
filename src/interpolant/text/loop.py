"""The one loop of masked-diffusion text sampling: a spec, a run context and the sampler methods
as its policies (issue 11, item 8).

A text sampler fills the masked positions (id V) of a canvas (B, L) and never touches the
others, so prefix prompts, infilling and schema scaffolds (S3) are just canvases. Every sampler
is a :class:`Method`, a frozen configurable policy with three parts, and :func:`sample_text`
is the one loop that drives it::

    state = method.start(run)                          # the method's typed per-run state
    while (query := method.query(run, state)) is not None:
        probs = run.evaluate(query)                    # the one counted denoiser evaluation
        run.advance(method.update(run, state, query, probs))

:meth:`SamplingRun.evaluate` is where the denoiser is called during a run: it counts the batched
calls (``nfe``) and each row's evaluations (``row_evals``), checks the logits' shape, turns
them into float64 probabilities and keeps the cache (a row whose tokens did not change since
its last evaluation reuses it: MDLM's ``ddpm_cache``, exact for a time-agnostic denoiser).
:meth:`SamplingRun.advance` refuses a canvas whose fixed tokens changed. Random numbers come from
:class:`interpolant.randomness.Streams` (one stream per sample, named after the method), so a
row's k-th draw depends on neither the batch nor which rows are still active.

:class:`TextSampler` is the spec (method, steps, precision, cache, seed), the text counterpart
of :class:`interpolant.solvers.Sampler`: frozen, validated, ``config()`` / ``from_config``, one
resolver of keyword shortcuts (:func:`as_text_sampler`). It is a spec of its own because the
continuous one describes a Gaussian-path integration (solver step, nfe-to-steps, a grid over
logSNR, t_max, solver dtype) while a text sampler is a decoding method with a step count, a
categorical precision and a cache; and the evaluation is the run's rather than
:meth:`interpolant.Model.at`, because a text denoiser returns logits (B, L, V) for tokens
(B, L) on a discrete path, not a prediction of x's shape on a Gaussian one.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypedDict, TypeVar

import torch
from torch import Tensor
from typing_extensions import Unpack

from ..configurable import Configurable, Registry, boolean, build, number, one_of, option, optional
from ..errors import UserError, WrongTypeError
from ..paths.discrete import DiscretePath
from ..randomness import Streams, fresh_seed
from .base import Denoiser, check_tokens, mask_id

PRECISIONS = ("float64", "float32")
S = TypeVar("S")


@dataclass(frozen=True)
class Query:
    """The denoiser evaluation a method asks for next: each row's time ``t`` (B,) float64 and
    the rows to evaluate (a bool mask (B,); None: every row)."""

    t: Tensor
    rows: Tensor | None = None


class Method(Configurable, Generic[S]):
    """A text sampler as a policy of :func:`sample_text` (subclasses are frozen dataclasses;
    their fields are the method's options, ``stream`` names its random streams)."""

    stream: ClassVar[str] = "text"
    #: Whether the method runs a number of steps given by the spec (``TextSampler.steps``).
    uses_steps: ClassVar[bool] = True

    def check(self, spec: TextSampler) -> None:
        """Rules between the method and the rest of the spec (raise :class:`UserError`)."""

    @abstractmethod
    def start(self, run: SamplingRun) -> S:
        """The method's state for one run (a mutable dataclass; never kept on the method)."""

    @abstractmethod
    def query(self, run: SamplingRun, state: S) -> Query | None:
        """The next evaluation, or None when the canvas is done."""

    @abstractmethod
    def update(self, run: SamplingRun, state: S, query: Query, probs: Tensor) -> Tensor:
        """The next canvas (B, L) from the probabilities ``probs`` (n_rows, L, V) of the
        query's rows (the state advances in place)."""


#: The text samplers by name (``ancestral``, ``first_hitting``, ``confidence``: see
#: :mod:`interpolant.text.samplers`). EDLM (:class:`interpolant.text.edlm.EDLM`) holds an energy
#: model, so it is passed as an object rather than by name.
METHODS: Registry[Method[Any]] = Registry("text sampler", Method)


def as_method(method: Any) -> Method[Any]:
    """A method from itself, its name or its config dict."""
    return METHODS.build(method)


@dataclass(frozen=True)
class TextSampler(Configurable):
    """How to sample text: the method (with its options), the number of steps (for the methods
    on a time grid), the precision of the categorical draws, the cache and the seed of the
    per-sample streams (None: drawn from torch's global generator)."""

    name: ClassVar[str] = "text-sampler"
    method: Method[Any] = option(
        "first_hitting",
        help="ancestral, first_hitting or confidence (a name, config or object), or an EDLM",
    )
    steps: int | None = option(
        None,
        help="grid steps (ancestral, confidence, EDLM; first-hitting's calls follow the masks)",
        check=optional(number(1, integer=True)),
    )
    precision: str = option(
        "float64",
        help="categorical draws: float64 (exact) or float32 (MDLM's Gumbel-max; seed paper 7)",
        check=one_of(*PRECISIONS),
    )
    cache: bool = option(
        False,
        help="reuse a row's last evaluation while its tokens are unchanged (time-agnostic nets)",
        check=boolean,
    )
    seed: int | None = option(
        None,
        help="seed of the per-sample streams (row i: derive_seed(method stream, seed, i))",
        check=optional(number(integer=True)),
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", as_method(self.method))
        super().__post_init__()

    def validate(self) -> None:
        name = self.method.name or type(self.method).__name__
        if self.method.uses_steps and self.steps is None:
            raise UserError(f"the {name} sampler needs steps=")
        if not self.method.uses_steps and self.steps is not None:
            raise UserError(
                f"the {name} sampler takes no steps (it calls the model until no mask is left)"
            )
        self.method.check(self)

    def config(self) -> dict[str, Any]:
        out = super().config()
        out.pop("name", None)
        return out

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TextSampler:
        return build(cls, dict(config))


class TextSamplerOptions(TypedDict, total=False):
    """The keyword shortcuts of :func:`sample_text` (the fields of :class:`TextSampler`)."""

    method: str | dict[str, Any] | Method[Any]
    steps: int | None
    precision: str
    cache: bool
    seed: int | None


def as_text_sampler(
    sampler: TextSampler | Mapping[str, Any] | None = None, **options: Any
) -> TextSampler:
    """The one place keyword shortcuts become a :class:`TextSampler`: ``sampler`` (a spec, its
    config, or None for the defaults) with ``options`` replaced."""
    if sampler is None:
        return build(TextSampler, options)
    if isinstance(sampler, Mapping):
        return build(TextSampler, {**dict(sampler), **options})
    if not isinstance(sampler, TextSampler):
        raise WrongTypeError(
            f"sampler must be a TextSampler (or its config), got {type(sampler).__name__}"
        )
    return sampler.replace(**options) if options else sampler


@dataclass
class TextSample:
    """Sampled tokens (B, L), batched denoiser calls ``nfe``, per-row evaluations ``row_evals``
    (B,), the wall time of the loop and the spec it ran (with the seed it used)."""

    tokens: Tensor
    nfe: int
    row_evals: Tensor
    wall_s: float
    sampler: TextSampler


def denoiser_probs(denoiser: Denoiser, tokens: Tensor, t: Tensor, vocab_size: int) -> Tensor:
    """p(x^i = v | tokens) (B, L, V) in float64 from the denoiser's logits: the one raw call of a
    text denoiser (uncounted; during a run use :meth:`SamplingRun.evaluate`)."""
    logits = denoiser(tokens, t)
    if logits.shape != (*tokens.shape, vocab_size):
        raise UserError(
            f"the denoiser must return logits of shape {(*tokens.shape, vocab_size)}, "
            f"got {tuple(logits.shape)}"
        )
    return torch.softmax(logits.to(torch.float64), dim=-1)


class SamplingRun:
    """The one context of a text sampling run: the canvas ``x``, the denoiser's counted
    evaluation, the random streams and the cache."""

    def __init__(
        self, denoiser: Denoiser, canvas: Tensor, vocab_size: int, path: DiscretePath,
        spec: TextSampler, seed: int,
    ) -> None:  # fmt: skip
        self.denoiser, self.vocab_size, self.path, self.spec = denoiser, vocab_size, path, spec
        self.mask = mask_id(vocab_size)
        self.x = canvas.clone()
        self.fixed = canvas != self.mask
        self.batch, self.length = canvas.shape
        self.streams = Streams(seed, self.batch, stream=spec.method.stream)
        self.nfe = 0
        self.row_evals = torch.zeros(self.batch, dtype=torch.long)
        self._cache: Tensor | None = None  # the probabilities of each row's last evaluation
        self._seen: Tensor | None = None  # the tokens they were computed from

    @property
    def masked(self) -> Tensor:
        """(B, L) bool: the positions still masked."""
        return self.x == self.mask

    def evaluate(self, query: Query) -> Tensor:
        """Probabilities (n_rows, L, V) float64 for the query's rows: one batched denoiser call
        (counted once in ``nfe``, once per evaluated row in ``row_evals``); with the cache, only
        the rows whose tokens changed since their last evaluation are called, and no call at all
        is made when none did."""
        rows = torch.ones(self.batch, dtype=torch.bool) if query.rows is None else query.rows
        if not self.spec.cache:
            self._count(rows)
            return denoiser_probs(self.denoiser, self.x[rows], query.t[rows], self.vocab_size)
        if self._cache is None or self._seen is None:
            shape = (self.batch, self.length, self.vocab_size)
            self._cache = torch.zeros(shape, dtype=torch.float64)
            self._seen = torch.full_like(self.x, -1)
        need = rows & (self.x != self._seen).any(1)
        if bool(need.any()):
            self._count(need)
            x = self.x[need]
            self._cache[need] = denoiser_probs(self.denoiser, x, query.t[need], self.vocab_size)
            self._seen[need] = x
        return self._cache[rows]

    def _count(self, rows: Tensor) -> None:
        self.nfe += 1
        self.row_evals += rows.long()

    def advance(self, x: Tensor) -> None:
        """Make ``x`` the canvas, refusing one that changed a fixed token (a sampler bug)."""
        if x.shape != self.x.shape or x.dtype != torch.long:
            raise RuntimeError(f"a sampler returned a canvas {x.dtype} {tuple(x.shape)}")
        if bool((x[self.fixed] != self.x[self.fixed]).any()):
            raise RuntimeError(f"the {self.spec.method.name} sampler changed a fixed token")
        self.x = x


def vocabulary(denoiser: Denoiser, vocab_size: int | None) -> int:
    """``vocab_size``, else the denoiser's ``vocab_size`` attribute."""
    if vocab_size is None:
        vocab_size = getattr(denoiser, "vocab_size", None)
        if vocab_size is None:
            raise UserError("vocab_size is required when the denoiser has no .vocab_size")
    return int(vocab_size)


def progress_bar(total: int, desc: str, enabled: bool | None) -> Any:
    """A tqdm bar over ``total`` units, or None. ``enabled`` None: only on a terminal. Not on a
    terminal (a log file, a pipe) it writes a line at most every 30 s, so logs stay short."""
    import sys

    if enabled is False or (enabled is None and not sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, mininterval=0.1 if tty else 30.0, dynamic_ncols=tty)


class Tempered:
    """A denoiser whose logits are divided by ``temperature`` (< 1 sharpens, > 1 flattens):
    p_T(v) proportional to p(v)^(1 / T), for the samplers without a temperature of their own."""

    def __init__(self, denoiser: Denoiser, temperature: float) -> None:
        if not temperature > 0:
            raise UserError(f"temperature must be > 0, got {temperature!r}")
        self.denoiser, self.temperature = denoiser, float(temperature)
        self.vocab_size = getattr(denoiser, "vocab_size", None)

    def __call__(self, tokens: Tensor, t: Tensor) -> Tensor:
        return self.denoiser(tokens, t) / self.temperature


@torch.no_grad()
def sample_text(
    denoiser: Denoiser,
    canvas: Tensor,
    sampler: TextSampler | Mapping[str, Any] | None = None,
    *,
    vocab_size: int | None = None,
    path: DiscretePath | None = None,
    progress: bool | None = False,
    **shortcuts: Unpack[TextSamplerOptions],
) -> TextSample:
    """Fill the masked positions (id V) of ``canvas`` (B, L) with a masked-diffusion
    ``denoiser``; every other token is kept (prefixes, infilling, scaffolds).

    ``sampler`` is a :class:`TextSampler` (or its config); the shortcuts ``method=``,
    ``steps=``, ``precision=``, ``cache=``, ``seed=`` build or change one
    (:func:`as_text_sampler`). ``vocab_size`` defaults to ``denoiser.vocab_size``; ``path``
    (default linear) gives the times the denoiser sees and the ancestral unmasking schedule.
    Runs under ``torch.no_grad()``. ``progress``: a bar of unmasked tokens (None: on a terminal
    only; :func:`progress_bar`).
    """
    spec = as_text_sampler(sampler, **shortcuts)
    vocab = vocabulary(denoiser, vocab_size)
    check_tokens(canvas, vocab)
    seed = fresh_seed() if spec.seed is None else spec.seed
    spec = spec if spec.seed is not None else spec.replace(seed=seed)
    run = SamplingRun(denoiser, canvas, vocab, DiscretePath("linear") if path is None else path,
                  spec, seed)  # fmt: skip
    method, start = spec.method, time.perf_counter()
    state = method.start(run)
    bar = progress_bar(int(run.masked.sum()), f"sampling ({method.name})", progress)
    while (query := method.query(run, state)) is not None:
        probs = run.evaluate(query)
        left = int(run.masked.sum())
        run.advance(method.update(run, state, query, probs))
        if bar is not None:
            bar.update(left - int(run.masked.sum()))
    if bar is not None:
        bar.close()
    return TextSample(run.x, run.nfe, run.row_evals, time.perf_counter() - start, spec)


def masked_canvas(n: int, length: int, vocab_size: int, prefix: Tensor | None = None) -> Tensor:
    """``n`` all-masked sequences of ``length`` tokens, the first ones set to ``prefix``."""
    x = torch.full((n, length), mask_id(vocab_size), dtype=torch.long)
    if prefix is not None:
        prefix = torch.as_tensor(prefix, dtype=torch.long).reshape(-1)
        if prefix.numel() > length:
            raise UserError(f"prefix of {prefix.numel()} tokens exceeds length {length}")
        x[:, : prefix.numel()] = prefix
    return x


__all__ = [
    "METHODS",
    "PRECISIONS",
    "Method",
    "Query",
    "SamplingRun",
    "Tempered",
    "TextSample",
    "TextSampler",
    "TextSamplerOptions",
    "as_method",
    "as_text_sampler",
    "denoiser_probs",
    "masked_canvas",
    "progress_bar",
    "sample_text",
    "vocabulary",
]
