"""S3, self-adaptive schema scaffolding (seed 29, Xiong et al. 2025).

Instead of asking a masked-diffusion model to write a whole JSON object, write the structure
ourselves and let the model fill only the values. :func:`build_scaffold` compiles a JSON schema
into a canvas: keys, quotes, colons, commas and braces are fixed tokens (never sampled or
remasked); each value is a run of masked slots with a token budget. A pad token the model may
emit fills a slot's unused budget and is removed when decoding (the paper's ``<none>``
self-adaptive length; pick a token that is JSON whitespace, e.g. a space, so that even
undecoded text parses). Denoising touches the slots only (any text sampler: the spec of
:func:`sample_json` is a :class:`~interpolant.text.loop.TextSampler`, by default
:data:`JSON_SAMPLER`).

Nullable strings, two layouts. Default: the slot holds the whole JSON value (``null`` or a
quoted string) followed by pads, so the model writes the quotes, and whether the value is null
rests on one character (an opening quote or ``n``) that the rest of the slot must agree with.
``null_pad=True`` (the paper's layout): the quotes are scaffold as for any string and the value
is null when the model leaves the slot all pads (the paper's ``<none>`` abstention). This needs
a pad token that never occurs inside a value (not the space of "Ada Lovelace"): with a space,
an all-space slot would be ambiguous with a string of spaces. A model trained with a space pad
on the default layout can commit the opening quote, then a run of pads, then ``ull``: the
``"ull`` failure of seed 29's trained arm (docs/papers/29-s3.md), which this layout rules out.

Supported schema (a subset of JSON Schema): ``object`` with ``properties`` (all emitted, in
order; a property not in ``required`` or typed ``[T, "null"]`` may be null), ``string``
(``maxLength`` = budget in tokens; quotes are scaffold unless the field may be null),
``integer``, ``number``, ``boolean``, ``enum``, nested objects. Arrays (unknown length),
``$ref``, ``anyOf``/``oneOf``/``allOf``, ``patternProperties`` and other type unions are
refused with an error naming the schema path.

The layout follows ``json.dumps``' default separators (``", "`` and ``": "``), which is what
``text.corpora.render_json`` writes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor
from typing_extensions import Unpack

from ..errors import UserError
from .base import Denoiser, mask_id
from .loop import TextSample, TextSampler, TextSamplerOptions, as_text_sampler, sample_text
from .samplers import Confidence

#: S3's decoder: LLaDA-style confidence decoding in 16 steps.
JSON_SAMPLER = TextSampler(Confidence(), steps=16)

UNSUPPORTED = ("$ref", "anyOf", "oneOf", "allOf", "not", "patternProperties", "if")
SCALARS = ("string", "integer", "number", "boolean")


class TextTokenizer(Protocol):
    """What S3 needs of a tokenizer (``text.tokenize.Tokenizer`` fits)."""

    vocab_size: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int] | Tensor) -> str: ...


@dataclass(frozen=True)
class Slot:
    """The masked positions [start, stop) holding the value at ``path`` (keys from the root);
    ``quoted``: the quotes are scaffold; ``nullable``: may decode to null (if also ``quoted``:
    an all-pad slot decodes to null, the ``null_pad`` layout)."""

    path: tuple[str, ...]
    start: int
    stop: int
    schema: dict[str, Any]
    quoted: bool
    nullable: bool


@dataclass
class Scaffold:
    """A compiled schema: ``tokens`` (L,) with the mask id in every slot position, ``fixed``
    (L,) True on scaffold tokens, the ``slots``, and the ``pieces`` of the layout (structure
    strings and slot indices, in order) used to decode."""

    tokens: Tensor
    fixed: Tensor
    slots: list[Slot]
    pieces: list[str | int]
    schema: dict[str, Any]
    vocab_size: int
    pad_id: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return int(self.tokens.numel())

    def canvas(self, n: int) -> Tensor:
        """``n`` copies of the canvas (n, L)."""
        return self.tokens.reshape(1, -1).repeat(n, 1)

    def slot_texts(self, tokens: Tensor, tokenizer: TextTokenizer) -> list[str]:
        """The text in every slot: leftover mask tokens dropped, pad tokens trimmed from both
        ends (a pad inside a value, e.g. the space of "Ada Lovelace", is kept; in the
        ``null_pad`` layout the pad never belongs to a value and every pad is dropped)."""
        out = []
        drop = {mask_id(self.vocab_size)} | ({self.pad_id} if self.meta.get("null_pad") else set())
        for slot in self.slots:
            ids = [int(i) for i in tokens[slot.start : slot.stop].tolist()]
            ids = [i for i in ids if i not in drop]
            while ids and ids[0] == self.pad_id:
                ids.pop(0)
            while ids and ids[-1] == self.pad_id:
                ids.pop()
            out.append(tokenizer.decode(ids) if ids else "")
        return out

    def decode(self, tokens: Tensor, tokenizer: TextTokenizer) -> str:
        """The JSON text of one filled canvas (L,): scaffold strings plus slot texts (a quoted
        nullable slot: ``null`` when empty, else the text in quotes)."""
        if tokens.shape != self.tokens.shape:
            raise UserError(f"tokens must have shape {tuple(self.tokens.shape)}")
        values = self.slot_texts(tokens, tokenizer)
        for i, slot in enumerate(self.slots):
            if slot.quoted and slot.nullable:  # its quotes are fixed tokens but not in pieces
                values[i] = "null" if not values[i] else f'"{values[i]}"'
        return "".join(p if isinstance(p, str) else values[p] for p in self.pieces)

    def fill(self, obj: dict[str, Any], tokenizer: TextTokenizer) -> Tensor:
        """The canvas with every slot holding ``obj``'s value (padded): the inverse of
        :meth:`decode` for objects that fit the budgets."""
        out = self.tokens.clone()
        for slot in self.slots:
            value: Any = obj
            for key in slot.path:
                value = value[key]
            if slot.quoted and slot.nullable and value is None:
                ids = []  # null: the slot is all pads
            else:
                ids = tokenizer.encode(value if slot.quoted else json.dumps(value))
            budget = slot.stop - slot.start
            if len(ids) > budget:
                raise UserError(
                    f"value at {'.'.join(slot.path)} needs {len(ids)} tokens, budget {budget}"
                )
            out[slot.start : slot.stop] = torch.tensor(ids + [self.pad_id] * (budget - len(ids)))
        return out


def _where(path: tuple[str, ...]) -> str:
    return "/" + "/".join(path) if path else "(root)"


def _check_supported(schema: Any, path: tuple[str, ...]) -> None:
    """Raise a ValueError naming the schema path of anything S3 cannot scaffold."""
    if not isinstance(schema, dict):
        raise UserError(f"schema at {_where(path)} must be an object, got {schema!r}")
    for key in UNSUPPORTED:
        if key in schema:
            raise UserError(
                f"schema at {_where(path)} uses {key!r}, which S3 cannot scaffold "
                "(the structure must be known before decoding)"
            )


def _value_type(schema: dict[str, Any], path: tuple[str, ...]) -> tuple[str, bool]:
    """(type, nullable) of a value schema."""
    _check_supported(schema, path)
    if "enum" in schema:
        return "enum", None in schema["enum"]
    kind = schema.get("type")
    nullable = False
    if isinstance(kind, list):
        rest = [k for k in kind if k != "null"]
        nullable = len(rest) < len(kind)
        if len(rest) != 1:
            raise UserError(
                f"schema at {_where(path)}: type unions {kind} are not supported (only [T, 'null'])"
            )
        kind = rest[0]
    if kind == "array":
        raise UserError(
            f"schema at {_where(path)}: arrays of unknown length cannot be "
            "scaffolded (the number of items must be fixed before decoding)"
        )
    if kind not in (*SCALARS, "object"):
        raise UserError(
            f"schema at {_where(path)}: unsupported type {kind!r}; expected one of "
            f"{(*SCALARS, 'object')}"
        )
    return str(kind), nullable


def _budget(schema: dict[str, Any], kind: str, default: int, tokenizer: TextTokenizer) -> int:
    """Token budget of a value slot (without the scaffold quotes of a plain string)."""
    if "x-budget" in schema:
        return int(schema["x-budget"])
    if kind == "string":
        return int(schema.get("maxLength", default))
    if kind == "enum":
        return max(len(tokenizer.encode(json.dumps(v))) for v in schema["enum"])
    if kind == "boolean":
        return 5
    if kind == "integer" and "minimum" in schema and "maximum" in schema:
        return max(len(str(int(schema["minimum"]))), len(str(int(schema["maximum"]))))
    return default


def build_scaffold(
    schema: dict[str, Any],
    tokenizer: TextTokenizer,
    pad: int | str = " ",
    budget: int = 16,
    quote_strings: bool = True,
    null_pad: bool = False,
) -> Scaffold:
    """Compile ``schema`` (an object schema) into a :class:`Scaffold` for ``tokenizer``.
    ``pad``: the padding token (id or text of one token) a slot may end with; ``budget``: the
    default slot length in tokens (strings without ``maxLength``, integers without bounds);
    ``quote_strings``: put the quotes of non-null strings in the scaffold (the paper's layout)
    or leave them to the model (then every slot is a whole JSON value followed by pads);
    ``null_pad``: nullable strings keep their quotes in the scaffold too and are null when their
    slot is all pads (the paper's ``<none>``; needs ``quote_strings`` and a pad that never occurs
    inside a value)."""
    if null_pad and not quote_strings:
        raise UserError("null_pad=True needs quote_strings=True (the quotes are scaffold)")
    kind, _ = _value_type(schema, ())
    if kind != "object":
        raise UserError(f"schema at (root) must be an object schema, got type {kind!r}")
    if budget < 1:
        raise UserError(f"budget must be >= 1, got {budget}")
    vocab = int(tokenizer.vocab_size)
    if isinstance(pad, str):
        pad_ids = tokenizer.encode(pad)
        if len(pad_ids) != 1:
            raise UserError(f"pad must be one token, {pad!r} encodes to {pad_ids}")
        pad_id = pad_ids[0]
    else:
        pad_id = int(pad)
    if not 0 <= pad_id < vocab:
        raise UserError(f"pad id must lie in [0, {vocab}), got {pad_id}")

    pieces: list[str | int] = []
    slots: list[Slot] = []
    ids: list[int] = []
    fixed: list[bool] = []

    def emit(text: str, piece: bool = True) -> None:
        # piece=False: fixed tokens that Scaffold.decode writes itself (a nullable slot's quotes)
        if piece and pieces and isinstance(pieces[-1], str):
            pieces[-1] += text
        elif piece:
            pieces.append(text)
        enc = tokenizer.encode(text)
        ids.extend(enc)
        fixed.extend([True] * len(enc))

    def value(sub: dict[str, Any], path: tuple[str, ...], optional: bool) -> None:
        kind, nullable = _value_type(sub, path)
        nullable = nullable or optional
        if kind == "object":
            if nullable:
                raise UserError(
                    f"schema at {_where(path)}: a nullable object cannot be "
                    "scaffolded (its keys would be optional structure)"
                )
            obj(sub, path)
            return
        quoted = kind == "string" and quote_strings and (not nullable or null_pad)
        n = _budget(sub, kind, budget, tokenizer)
        if not quoted and kind == "string":
            n += 2  # the quotes are the model's to write (or "null")
        if nullable and not quoted:
            n = max(n, 4)  # room for null
        if quoted:
            emit('"', piece=not nullable)
        pieces.append(len(slots))
        slots.append(Slot(path, len(ids), len(ids) + n, sub, quoted, nullable))
        ids.extend([mask_id(vocab)] * n)
        fixed.extend([False] * n)
        if quoted:
            emit('"', piece=not nullable)

    def obj(sub: dict[str, Any], path: tuple[str, ...]) -> None:
        props = sub.get("properties")
        if not isinstance(props, dict) or not props:
            raise UserError(f"schema at {_where(path)}: an object needs non-empty 'properties'")
        required = set(sub.get("required", props))
        emit("{")
        for i, (key, child) in enumerate(props.items()):
            emit(("" if i == 0 else ", ") + json.dumps(key) + ": ")
            value(child, (*path, key), optional=key not in required)
        emit("}")

    obj(schema, ())
    return Scaffold(
        torch.tensor(ids, dtype=torch.long),
        torch.tensor(fixed, dtype=torch.bool),
        slots,
        pieces,
        schema,
        vocab,
        pad_id,
        {"n_slot_tokens": sum(s.stop - s.start for s in slots), "null_pad": null_pad},
    )


def schema_errors(obj: Any, schema: dict[str, Any], path: tuple[str, ...] = ()) -> list[str]:
    """Every way ``obj`` breaks ``schema`` (the subset :func:`build_scaffold` supports), as
    readable strings; empty when valid."""
    kind, nullable = _value_type(schema, path)
    where = _where(path)
    if obj is None:
        return [] if nullable else [f"{where}: null is not allowed"]
    if kind == "enum":
        return [] if obj in schema["enum"] else [f"{where}: {obj!r} not in enum"]
    if kind == "object":
        if not isinstance(obj, dict):
            return [f"{where}: expected an object, got {type(obj).__name__}"]
        props = schema["properties"]
        required = set(schema.get("required", props))
        errors = [f"{where}: missing key {k!r}" for k in required if k not in obj]
        errors += [f"{where}: unexpected key {k!r}" for k in obj if k not in props]
        for key, child in props.items():
            if key in obj:
                optional = key not in required
                sub_errors = schema_errors(obj[key], child, (*path, key))
                if optional and obj[key] is None:
                    sub_errors = []
                errors += sub_errors
        return errors
    if kind == "string":
        if not isinstance(obj, str):
            return [f"{where}: expected a string, got {obj!r}"]
        limit = schema.get("maxLength")
        return [] if limit is None or len(obj) <= limit else [f"{where}: longer than {limit}"]
    if kind == "boolean":
        return [] if isinstance(obj, bool) else [f"{where}: expected a boolean, got {obj!r}"]
    if kind == "integer" and (type(obj) is not int):
        return [f"{where}: expected an integer, got {obj!r}"]
    if kind == "number" and (isinstance(obj, bool) or not isinstance(obj, int | float)):
        return [f"{where}: expected a number, got {obj!r}"]
    lo, hi = schema.get("minimum"), schema.get("maximum")
    if (lo is not None and obj < lo) or (hi is not None and obj > hi):
        return [f"{where}: {obj} outside [{lo}, {hi}]"]
    return []


def parse_valid(text: str, schema: dict[str, Any]) -> bool:
    """True when ``text`` parses as JSON and has no :func:`schema_errors`."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return False
    return not schema_errors(obj, schema)


@dataclass
class JSONSample:
    """Decoded JSON texts, the raw token rows and the sampler's record."""

    texts: list[str]
    tokens: Tensor
    sample: TextSample
    scaffold: Scaffold


def sample_json(
    denoiser: Denoiser,
    tokenizer: TextTokenizer,
    schema: dict[str, Any],
    sampler: TextSampler | Mapping[str, Any] | None = None,
    *,
    n: int = 1,
    length: int | None = None,
    prompt: Sequence[int] | None = None,
    pad: int | str = " ",
    budget: int = 16,
    quote_strings: bool = True,
    null_pad: bool = False,
    **shortcuts: Unpack[TextSamplerOptions],
) -> JSONSample:
    """S3 decoding: compile ``schema`` into a scaffold (``pad``, ``budget``, ``quote_strings``,
    ``null_pad``: :func:`build_scaffold`), put it after ``prompt`` (token ids) in a canvas of
    ``length`` tokens (default: just long enough; the tail is fixed padding) and let the text
    sampler (``sampler``, default :data:`JSON_SAMPLER`, changed by the shortcuts of
    :func:`~interpolant.text.loop.sample_text`) fill the value slots of ``n`` copies."""
    spec = as_text_sampler(JSON_SAMPLER if sampler is None else sampler, **shortcuts)
    scaffold = build_scaffold(
        schema, tokenizer, pad=pad, budget=budget, quote_strings=quote_strings, null_pad=null_pad
    )
    head = torch.as_tensor(list(prompt or []), dtype=torch.long)
    used = head.numel() + scaffold.length
    total = used if length is None else int(length)
    if total < used:
        raise UserError(f"length {total} is shorter than prompt + scaffold ({used} tokens)")
    tail = torch.full((total - used,), scaffold.pad_id, dtype=torch.long)
    canvas = torch.cat([head, scaffold.tokens, tail]).reshape(1, -1).repeat(n, 1)
    out = sample_text(denoiser, canvas, spec, vocab_size=scaffold.vocab_size)
    body = out.tokens[:, head.numel() : head.numel() + scaffold.length]
    texts = [scaffold.decode(row, tokenizer) for row in body]
    return JSONSample(texts, out.tokens, out, scaffold)
