"""A user's own text as training rows: ``interpolant train text --data FILE.txt|FILE.jsonl|FOLDER``.

One sequence per line of a ``.txt`` file, or one JSON object per line of a ``.jsonl`` file whose
``field`` holds the sequence; a folder is every ``.txt`` / ``.jsonl`` file in it (sorted, not
recursive). Blank lines are skipped. The held-out rows are a second file (``held_out``) or the
last ``held_out_fraction`` of the sequences (the last ones, so a file of ordered documents keeps
its test rows apart from what is trained on).

The tokenizer (characters, or BPE with ``bpe_vocab`` ids) is learned on the training sequences
plus the ``pad`` symbol (default a newline, which a one-sequence-per-line file cannot contain
inside a sequence); rows shorter than ``length`` are filled with ``pad`` after their end, so a
sample's text is everything before its first trailing pad. ``length`` None is the longest
training sequence in tokens (at most :data:`MAX_AUTO_LENGTH`). A longer sequence is truncated
(``too_long="truncate"``, the count is reported and stored in the run) or refused
(``too_long="refuse"``, naming the first such line).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MissingFileError, UserError
from .tokenize import Tokenizer

#: Keys of the ``file`` data section and their defaults (``path`` is required).
FILE_DEFAULTS: dict[str, Any] = {
    "name": "file",
    "path": None,
    "field": "text",
    "held_out": None,
    "held_out_fraction": 0.05,
    "tokenizer": "char",
    "bpe_vocab": 256,
    "length": None,
    "too_long": "truncate",
    "pad": "\n",
}
SUFFIXES = (".txt", ".jsonl")
MAX_AUTO_LENGTH = 512


@dataclass
class Sequences:
    """Sequences read from files, with where each came from (for errors)."""

    texts: list[str]
    where: list[str]


def read_sequences(path: str | Path, field: str = "text") -> Sequences:
    """The non-blank sequences of a ``.txt`` / ``.jsonl`` file or of a folder of them."""
    root = Path(path)
    if root.is_dir():
        files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix in SUFFIXES)
        if not files:
            raise UserError(f"data folder {root} holds no {' or '.join(SUFFIXES)} file")
    elif root.is_file():
        files = [root]
    else:
        raise MissingFileError(f"data {root}: no such file or folder")
    out = Sequences([], [])
    for file in files:
        _read_file(file, field, out)
    if not out.texts:
        raise UserError(f"data {root} has no non-blank line: nothing to train on")
    return out


def _read_file(file: Path, field: str, out: Sequences) -> None:
    raw = file.read_bytes()
    if b"\0" in raw:
        raise UserError(f"{file} looks binary (it has NUL bytes): give a UTF-8 text file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(
            f"{file} is not UTF-8 text (byte {err.start}: {raw[err.start : err.start + 4]!r})"
        ) from err
    jsonl = file.suffix == ".jsonl"
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if jsonl:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{file}:{number} is not JSON ({err.msg})") from err
            if not isinstance(obj, dict) or not isinstance(obj.get(field), str):
                raise UserError(
                    f"{file}:{number} has no string field {field!r} (set data.field=NAME; "
                    f"its keys: {sorted(obj) if isinstance(obj, dict) else type(obj).__name__})"
                )
            line = obj[field]
        out.texts.append(line)
        out.where.append(f"{file}:{number}")


def build_tokenizer(texts: list[str], kind: str, pad: str, bpe_vocab: int) -> Tokenizer:
    """A character or BPE tokenizer learned on ``texts`` whose vocabulary includes ``pad``."""
    if len(pad) != 1:
        raise UserError(f"data.pad must be one character, got {pad!r}")
    if kind == "char":
        return Tokenizer.characters(sorted(set("".join(texts)) | {pad}))
    if kind == "bpe":
        return Tokenizer.train_bpe([*texts, pad], bpe_vocab)
    raise UserError(f"data.tokenizer must be 'char' or 'bpe', got {kind!r}")


@dataclass
class EncodedRows:
    """Token ids per sequence, each cut to ``length``; ``truncated`` counts the cut ones."""

    ids: list[list[int]]
    truncated: int


def encode_sequences(
    seqs: Sequences, tokenizer: Tokenizer, length: int, too_long: str, pad: str
) -> EncodedRows:
    """Encode every sequence; one longer than ``length`` is cut or refused (``too_long``)."""
    if too_long not in ("truncate", "refuse"):
        raise UserError(f"data.too_long must be 'truncate' or 'refuse', got {too_long!r}")
    rows, cut = [], 0
    for text, where in zip(seqs.texts, seqs.where, strict=True):
        if pad in text:
            raise UserError(f"{where} contains the pad {pad!r}: choose another data.pad")
        ids = tokenizer.encode(text)
        if len(ids) > length:
            if too_long == "refuse":
                raise UserError(
                    f"{where} is {len(ids)} tokens, longer than data.length={length} "
                    "(set data.too_long=truncate to cut such lines, or a larger data.length)"
                )
            ids, cut = ids[:length], cut + 1
        rows.append(ids)
    return EncodedRows(rows, cut)


def pad_rows(rows: list[list[int]], length: int, pad_id: int) -> Any:
    """(N, length) int64 ids, each row filled with ``pad_id`` after its end."""
    import torch

    return torch.tensor([r + [pad_id] * (length - len(r)) for r in rows], dtype=torch.long)


def strip_padding(text: str, pad: str) -> str:
    """A sample's text: everything before its trailing pads."""
    return text.rstrip(pad)


def load_file_data(spec: dict[str, Any]) -> tuple[Any, Any, Tokenizer, dict[str, Any]]:
    """(train rows, held-out rows, tokenizer, info) of a ``file`` data section; ``info`` holds
    the resolved ``length`` and the truncation counts."""
    if not spec.get("path"):
        raise UserError("data.path is required for file data (or use --data FILE)")
    seqs = read_sequences(spec["path"], spec["field"])
    if spec.get("held_out"):
        held = read_sequences(spec["held_out"], spec["field"])
        train = seqs
    else:
        frac = float(spec["held_out_fraction"])
        if not 0.0 < frac < 1.0:
            raise UserError(f"data.held_out_fraction must lie in (0, 1), got {frac}")
        n_held = max(1, round(frac * len(seqs.texts)))
        if len(seqs.texts) - n_held < 1:
            raise UserError(
                f"{spec['path']} has {len(seqs.texts)} sequence(s): too few to hold "
                f"{n_held} out; give data.held_out=FILE or more lines"
            )
        train = Sequences(seqs.texts[:-n_held], seqs.where[:-n_held])
        held = Sequences(seqs.texts[-n_held:], seqs.where[-n_held:])
    pad = spec["pad"]
    tok = build_tokenizer(train.texts, spec["tokenizer"], pad, int(spec["bpe_vocab"]))
    length = spec.get("length")
    if length is None:
        length = min(max(len(tok.encode(t)) for t in train.texts), MAX_AUTO_LENGTH)
    if not isinstance(length, int) or length < 2:
        raise UserError(f"data.length must be an int >= 2, got {length!r}")
    enc_train = encode_sequences(train, tok, length, spec["too_long"], pad)
    try:
        enc_held = encode_sequences(held, tok, length, spec["too_long"], pad)
    except UserError as err:
        raise UserError(
            f"held-out data: {err} (the tokenizer is learned on the train data)"
        ) from err
    pad_id = tok.token_id(pad)
    info = {
        "length": length,
        "pad": pad,
        "n_train": len(train.texts),
        "n_held_out": len(held.texts),
        "truncated_train": enc_train.truncated,
        "truncated_held_out": enc_held.truncated,
    }
    return (
        pad_rows(enc_train.ids, length, pad_id),
        pad_rows(enc_held.ids, length, pad_id),
        tok,
        info,
    )
