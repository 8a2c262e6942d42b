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
  and as free text for the extraction prompt. :func:`record_json_schema` is that schema as a
  JSON Schema; :func:`render_json_slotted` writes a record in the slot layout an S3 model is
  trained on (each value followed by a random run of pads, within a fixed budget; JSON
  whitespace, or the paper's layout with pads inside fixed quotes and null as an all-pad slot,
  undone by :func:`strip_pads`);
  :func:`record_field_accuracy` scores generated records against the corpus' value domain.

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
import re
from typing import Any

import torch
from torch import Tensor

from ..errors import UserError

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
        raise UserError(
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
        raise UserError(f"p_missing must lie in [0, 1), got {p_missing!r}")
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
        raise UserError(f"a record is a dict, got {type(record).__name__}")
    if set(record) != set(RECORD_SCHEMA):
        raise UserError(f"record keys {sorted(record)} differ from {sorted(RECORD_SCHEMA)}")
    for key, (kind, nullable) in RECORD_SCHEMA.items():
        value = record[key]
        if value is None and nullable:
            continue
        ok = isinstance(value, str) if kind == "string" else type(value) is int
        if not ok:
            raise UserError(f"record field {key!r} must be of type {kind}, got {value!r}")


def parse_json_record(text: str) -> dict[str, Any]:
    """Parse a rendered record and check it against the schema (raises ValueError)."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"not valid JSON: {err}") from err
    check_record(record)
    return record


# --- records in the slot layout, schema and value domain (S3 with a trained model) --------------

#: Longest name ``"Xxyyy Xxyyy"``: two syllable pairs and a space.
NAME_LENGTH = 2 * max(len(f) + len(g) for f in FIRST_SYLLABLES for g in LAST_SYLLABLES) + 1
_SYLLABLE_NAME = "(?:{})(?:{})".format("|".join(FIRST_SYLLABLES), "|".join(LAST_SYLLABLES))
NAME_PATTERN = re.compile(f"{_SYLLABLE_NAME} {_SYLLABLE_NAME}", re.IGNORECASE)
YEARS = (1900, 2000)


def record_json_schema() -> dict[str, Any]:
    """:data:`RECORD_SCHEMA` as a JSON Schema (the subset ``text.s3`` scaffolds): string
    ``maxLength`` is the longest value of the corpus, so a slot fits every record."""
    return {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": NAME_LENGTH},
            "birth_year": {"type": "integer", "minimum": YEARS[0], "maximum": YEARS[1]},
            "birth_place": {"type": ["string", "null"], "maxLength": max(map(len, CITIES))},
            "occupation": {"type": ["string", "null"], "maxLength": max(map(len, OCCUPATIONS))},
            "spouse": {"type": ["string", "null"], "maxLength": NAME_LENGTH},
        },
        "required": ["name", "birth_year"],
    }


def render_json_slotted(
    record: dict[str, Any],
    budgets: dict[str, int],
    generator: torch.Generator,
    p_aligned: float = 0.5,
    pad: str = " ",
    null_pad: bool = False,
) -> str:
    """The record as one line of JSON where each value is followed by k ``pad`` characters:
    with probability ``p_aligned`` k = spare for every field (the S3 canvas layout, each value
    padded to its slot), otherwise k uniform on 0..spare per field (ragged layouts).
    ``budgets`` maps each field to its slot length in characters (an S3 scaffold's slot lengths).

    Default (``null_pad=False``, ``pad`` a space): the slot holds ``json.dumps`` of the value
    (quotes or ``null`` included), so the text is valid JSON for the same record.
    ``null_pad=True`` (the paper's layout, ``s3.build_scaffold(null_pad=True)``): string
    quotes are outside the slot, the pads go inside them, and a null string is an all-pad slot
    (at least one pad); the text is JSON after :func:`strip_pads`. ``pad`` must then be one
    character that no value contains."""
    check_record(record)
    if set(budgets) != set(RECORD_SCHEMA):
        raise UserError(f"budgets must name the fields {sorted(RECORD_SCHEMA)}, got {budgets}")
    if not 0.0 <= p_aligned <= 1.0:
        raise UserError(f"p_aligned must lie in [0, 1], got {p_aligned!r}")
    taken = '{}[]":, 0123456789' + "".join(RECORD_SCHEMA)  # JSON, digits, key characters
    if null_pad and (len(pad) != 1 or pad in taken or pad.isalpha()):
        raise UserError(f"pad must be one character outside JSON and the values, got {pad!r}")
    aligned = float(torch.rand((), generator=generator)) < p_aligned
    parts = []
    for i, key in enumerate(RECORD_SCHEMA):
        value = record[key]
        quoted = null_pad and RECORD_SCHEMA[key][0] == "string"
        text = ("" if value is None else value) if quoted else json.dumps(value)
        spare = budgets[key] - len(text)
        if spare < 0 or (quoted and value is None and spare < 1):
            raise UserError(f"budgets[{key!r}] = {budgets[key]} is too short for {text!r}")
        low = 1 if quoted and value is None else 0  # an all-pad slot needs a pad
        k = spare if aligned else int(torch.randint(low, spare + 1, (), generator=generator))
        body = f'"{text}{pad * k}"' if quoted else text + pad * k
        parts.append(("{" if i == 0 else ", ") + json.dumps(key) + ": " + body)
    return "".join(parts) + "}"


def strip_pads(text: str, pad: str) -> str:
    """JSON text of a ``null_pad`` layout text (:func:`render_json_slotted`, an S3 canvas): a
    quoted run of pads is null, every other pad is deleted. The same post-processing for every
    decoder, scaffolded or not (the paper removes its ``<none>`` tokens the same way)."""
    if len(pad) != 1:
        raise UserError(f"pad must be one character, got {pad!r}")
    return re.sub(f'"{re.escape(pad)}+"', "null", text).replace(pad, "")


def in_record_domain(key: str, value: Any) -> bool:
    """Whether ``value`` is one :func:`records` can produce for field ``key`` (a syllable name,
    a year in 1900..2000, a listed city or occupation, null where the field is nullable)."""
    if key not in RECORD_SCHEMA:
        raise UserError(f"unknown record field {key!r}; expected one of {list(RECORD_SCHEMA)}")
    if value is None:
        return RECORD_SCHEMA[key][1]
    if key in ("name", "spouse"):
        return isinstance(value, str) and _is_name(value)
    if key == "birth_year":
        return type(value) is int and YEARS[0] <= value <= YEARS[1]
    return value in (CITIES if key == "birth_place" else OCCUPATIONS)


def _is_name(text: str) -> bool:
    """Two capitalised syllable pairs, as :func:`records` writes them."""
    return NAME_PATTERN.fullmatch(text) is not None and text == " ".join(
        w.capitalize() for w in text.split(" ")
    )


def record_field_accuracy(text: str) -> float:
    """Domain field accuracy of one generated record: the fraction of the schema's fields that
    the parsed text holds with a value in the corpus' domain (:func:`in_record_domain`); 0 if
    the text is not a JSON object. Extra keys are ignored; a missing key counts as wrong."""
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return 0.0
    if not isinstance(obj, dict):
        return 0.0
    hits = sum(key in obj and in_record_domain(key, obj[key]) for key in RECORD_SCHEMA)
    return hits / len(RECORD_SCHEMA)
