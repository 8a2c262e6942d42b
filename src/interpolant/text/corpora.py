"""Text corpora available offline on every machine, and synthetic languages with exact answers.

* :func:`stdlib_docs`: real English prose, the docstrings of a fixed list of pure-Python
  standard-library modules (and the public objects they export) plus the Zen of Python. Why it is
  everywhere: the docstrings are part of the interpreter's own modules, so any Python that runs
  this library has them, with no download and no file outside the standard library. Caveats: the
  text differs slightly between Python versions (its sha256 is stored with every run), and
  ``python -OO`` strips docstrings (then only the Zen remains and we refuse to build a corpus
  that small).
* :func:`records` / :func:`render_json` / :func:`render_text`: synthetic biographical records with
  typed fields rendered as JSON with a fixed schema (for S3 schema scaffolding, seed paper 29),
  and as free text for the extraction prompt.

The Markov-chain language with its exact denoiser lives in ``text.markov``.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import importlib
import inspect
import io
import json
from typing import Any

import torch
from torch import Tensor

#: Modules whose docstrings form :func:`stdlib_docs` (pure Python in every CPython since 3.8).
STDLIB_MODULES = (
    "textwrap",
    "string",
    "json",
    "collections",
    "functools",
    "statistics",
    "difflib",
    "heapq",
    "fractions",
    "calendar",
)


def zen_of_python() -> str:
    """The Zen of Python (``import this``), decoded from the module without printing it."""
    with contextlib.redirect_stdout(io.StringIO()):
        this = importlib.import_module("this")
    return codecs.decode(this.s, "rot13")


def stdlib_docs(modules: tuple[str, ...] = STDLIB_MODULES, min_chars: int = 10_000) -> str:
    """The Zen of Python, then the docstrings of ``modules`` and of the objects each lists in
    ``__all__``, separated by blank lines. Raises if fewer than ``min_chars`` characters are
    found (e.g. under ``python -OO``)."""
    parts = [zen_of_python()]
    for name in modules:
        module = importlib.import_module(name)
        docs = [inspect.getdoc(module)]
        for attr in sorted(getattr(module, "__all__", ())):
            obj = getattr(module, attr, None)
            if obj is not None and (inspect.isclass(obj) or inspect.isfunction(obj)):
                docs.append(inspect.getdoc(obj))
        parts.extend(d for d in docs if d)
    text = "\n\n".join(parts)
    if len(text) < min_chars:
        raise RuntimeError(
            f"only {len(text)} characters of standard-library docstrings found (is Python "
            "running with -OO, which strips them?)"
        )
    return text


def fingerprint(text: str) -> str:
    """sha256 of the text's UTF-8 bytes (stored with a run: the corpus varies by Python)."""
    return hashlib.sha256(text.encode()).hexdigest()


def chunk(ids: list[int] | Tensor, length: int, stride: int | None = None) -> Tensor:
    """(N, length) windows of a token stream, every ``stride`` (default ``length``) tokens."""
    stream = torch.as_tensor(ids, dtype=torch.long)
    stride = length if stride is None else stride
    if length < 1 or stride < 1 or stream.numel() < length:
        raise ValueError(
            f"need length >= 1, stride >= 1 and at least length={length} tokens, got "
            f"{stream.numel()} tokens, stride {stride}"
        )
    return stream.unfold(0, length, stride).contiguous()


# --- records rendered as JSON (S3) ----------------------------------------------------------------

FIRST_SYLLABLES = ("al", "ber", "cor", "da", "el", "fen", "gor", "hal", "is", "jo", "ka", "lu")
LAST_SYLLABLES = ("an", "bert", "dor", "ena", "ford", "gan", "ia", "mir", "ne", "ric", "sa", "to")
CITIES = (
    "Lyon", "Oslo", "Porto", "Graz", "Bern", "Turin", "Ghent", "Cork", "Lund", "Pisa",
    "Brno", "Riga", "Kiel", "Bari", "Split", "Vigo", "Tartu", "Delft", "Basel", "Nice",
)  # fmt: skip
OCCUPATIONS = (
    "painter", "chemist", "poet", "engineer", "sailor", "judge", "baker", "pianist",
    "botanist", "architect", "surgeon", "weaver", "linguist", "astronomer", "potter",
)  # fmt: skip

#: The fixed schema: field name -> JSON type ("string", "integer"), and whether it may be null.
RECORD_SCHEMA: dict[str, tuple[str, bool]] = {
    "name": ("string", False),
    "birth_year": ("integer", False),
    "birth_place": ("string", True),
    "occupation": ("string", True),
    "spouse": ("string", True),
}


def _pick(options: tuple[str, ...], generator: torch.Generator) -> str:
    return options[int(torch.randint(len(options), (), generator=generator))]


def _name(generator: torch.Generator) -> str:
    first = _pick(FIRST_SYLLABLES, generator) + _pick(LAST_SYLLABLES, generator)
    last = _pick(FIRST_SYLLABLES, generator) + _pick(LAST_SYLLABLES, generator)
    return f"{first.capitalize()} {last.capitalize()}"


def records(n: int, seed: int = 0, p_missing: float = 0.3) -> list[dict[str, Any]]:
    """``n`` records following :data:`RECORD_SCHEMA`; each nullable field is None (missing) with
    probability ``p_missing``."""
    if not 0.0 <= p_missing < 1.0:
        raise ValueError(f"p_missing must lie in [0, 1), got {p_missing!r}")
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        rec: dict[str, Any] = {
            "name": _name(gen),
            "birth_year": 1900 + int(torch.randint(101, (), generator=gen)),
            "birth_place": _pick(CITIES, gen),
            "occupation": _pick(OCCUPATIONS, gen),
            "spouse": _name(gen),
        }
        for key, (_, nullable) in RECORD_SCHEMA.items():
            if nullable and float(torch.rand((), generator=gen)) < p_missing:
                rec[key] = None
        out.append(rec)
    return out


def render_json(record: dict[str, Any]) -> str:
    """The record as one line of JSON with the schema's key order (nulls kept)."""
    check_record(record)
    return json.dumps({key: record[key] for key in RECORD_SCHEMA}, ensure_ascii=True)


def render_text(record: dict[str, Any]) -> str:
    """A sentence-per-field description (missing fields are not mentioned)."""
    check_record(record)
    parts = [f"{record['name']} was born in {record['birth_year']}"]
    if record["birth_place"] is not None:
        parts[0] += f" in {record['birth_place']}"
    if record["occupation"] is not None:
        parts.append(f"worked as a {record['occupation']}")
    if record["spouse"] is not None:
        parts.append(f"married {record['spouse']}")
    return ", ".join(parts) + "."


def check_record(record: Any) -> None:
    """Raise ValueError naming the first field that breaks :data:`RECORD_SCHEMA`."""
    if not isinstance(record, dict):
        raise ValueError(f"a record is a dict, got {type(record).__name__}")
    if set(record) != set(RECORD_SCHEMA):
        raise ValueError(f"record keys {sorted(record)} differ from {sorted(RECORD_SCHEMA)}")
    for key, (kind, nullable) in RECORD_SCHEMA.items():
        value = record[key]
        if value is None and nullable:
            continue
        ok = isinstance(value, str) if kind == "string" else type(value) is int
        if not ok:
            raise ValueError(f"record field {key!r} must be of type {kind}, got {value!r}")


def parse_json_record(text: str) -> dict[str, Any]:
    """Parse a rendered record and check it against the schema (raises ValueError)."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"not valid JSON: {err}") from err
    check_record(record)
    return record
