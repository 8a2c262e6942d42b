"""Tokenizers for text diffusion, built on the Hugging Face ``tokenizers`` library (extra 'text').

Three kinds, one class:

* ``Tokenizer.characters(alphabet)``: one id per character (ids in the alphabet's order);
* ``Tokenizer.words(words)``: one id per whitespace-separated word (decoding joins with spaces);
* ``Tokenizer.train_bpe(corpus, vocab_size)``: byte-pair encoding learned on a corpus, over the
  corpus's own characters (not bytes), so every id decodes to readable text.

All three are lossless on in-vocabulary text (``decode(encode(s)) == s``; for words, up to
whitespace). Text with a character (or word) outside the vocabulary raises a ValueError naming
each offending symbol and its positions, instead of the silent drop or ``[UNK]`` of the library.
The mask id of masked diffusion is ``vocab_size`` (see ``text.base``): no tokenizer id uses it.
Saved as the library's ``tokenizer.json`` plus our kind in a small JSON wrapper (no pickles).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import UserError, WrongTypeError

KINDS = ("char", "word", "bpe")
# BPE pre-tokens: a word with its leading space, or a run of whitespace (keeps text lossless).
_BPE_SPLIT = r" ?[^\s]+|\s+"


def _library() -> Any:
    try:
        import tokenizers
    except ImportError as err:  # pragma: no cover - the extra is installed in dev environments
        raise ImportError(
            "interpolant.text.tokenize needs the 'tokenizers' package: pip install "
            "'interpolant[text]'"
        ) from err
    return tokenizers


class Tokenizer:
    """A trained ``tokenizers.Tokenizer`` with our conventions (see the module docstring).

    Build with :meth:`characters`, :meth:`words`, :meth:`train_bpe` or :meth:`load`.
    """

    def __init__(self, backend: Any, kind: str):
        if kind not in KINDS:
            raise UserError(f"kind must be one of {KINDS}, got {kind!r}")
        self.backend, self.kind = backend, kind
        vocab: dict[str, int] = backend.get_vocab()
        self.vocab_size = len(vocab)
        if sorted(vocab.values()) != list(range(self.vocab_size)):
            raise UserError("tokenizer ids must be 0..V-1 without gaps")
        self._id_to_token = {i: tok for tok, i in vocab.items()}
        # What text may contain: characters (char, bpe) or words (word).
        if kind == "word":
            self.symbols = frozenset(vocab)
        else:
            self.symbols = frozenset(tok for tok in vocab if len(tok) == 1)

    # --- construction ---------------------------------------------------------------------------
    @classmethod
    def characters(cls, alphabet: Iterable[str]) -> Tokenizer:
        """One id per character of ``alphabet`` (a string or iterable of single characters),
        in order of first appearance."""
        lib = _library()
        chars = list(dict.fromkeys(alphabet))
        bad = [c for c in chars if not isinstance(c, str) or len(c) != 1]
        if bad or not chars:
            raise UserError(f"alphabet must be non-empty single characters, got {bad or chars}")
        backend = lib.Tokenizer(lib.models.WordLevel({c: i for i, c in enumerate(chars)}, "\0"))
        backend.pre_tokenizer = lib.pre_tokenizers.Split(lib.Regex(r"[\s\S]"), "isolated")
        backend.decoder = lib.decoders.Fuse()
        return cls(_refuse_nul(backend, chars), "char")

    @classmethod
    def words(cls, words: Iterable[str]) -> Tokenizer:
        """One id per word (no whitespace inside a word), in order of first appearance."""
        lib = _library()
        vocab = list(dict.fromkeys(words))
        bad = [w for w in vocab if not isinstance(w, str) or not w or w != "".join(w.split())]
        if bad or not vocab:
            raise UserError(f"words must be non-empty strings without whitespace, got {bad}")
        backend = lib.Tokenizer(lib.models.WordLevel({w: i for i, w in enumerate(vocab)}, "\0"))
        backend.pre_tokenizer = lib.pre_tokenizers.WhitespaceSplit()
        return cls(_refuse_nul(backend, vocab), "word")

    @classmethod
    def train_bpe(
        cls, corpus: str | Sequence[str], vocab_size: int, min_frequency: int = 2
    ) -> Tokenizer:
        """Byte-pair encoding with at most ``vocab_size`` ids, learned on ``corpus`` (a string or
        a list of documents). Its base alphabet is every character of the corpus."""
        lib = _library()
        docs = [corpus] if isinstance(corpus, str) else list(corpus)
        alphabet = sorted(set("".join(docs)))
        if not alphabet:
            raise UserError("corpus is empty")
        if not isinstance(vocab_size, int) or vocab_size < len(alphabet):
            raise UserError(
                f"vocab_size must be an int >= the corpus alphabet size {len(alphabet)}, "
                f"got {vocab_size!r}"
            )
        backend = lib.Tokenizer(lib.models.BPE(unk_token=None))
        backend.pre_tokenizer = lib.pre_tokenizers.Split(lib.Regex(_BPE_SPLIT), "isolated")
        backend.decoder = lib.decoders.Fuse()
        trainer = lib.trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            initial_alphabet=alphabet,
            limit_alphabet=len(alphabet),
            special_tokens=[],
            show_progress=False,
        )
        backend.train_from_iterator(docs, trainer)
        return cls(backend, "bpe")

    # --- encode / decode ------------------------------------------------------------------------
    def check(self, text: str) -> None:
        """Raise ValueError naming every out-of-vocabulary symbol and its positions."""
        if not isinstance(text, str):
            raise WrongTypeError(f"text must be a str, got {type(text).__name__}")
        unknown: dict[str, list[int]] = {}
        if self.kind == "word":
            pos = 0
            for word in text.split():
                pos = text.index(word, pos)
                if word not in self.symbols:
                    unknown.setdefault(word, []).append(pos)
                pos += len(word)
        else:
            for pos, char in enumerate(text):
                if char not in self.symbols:
                    unknown.setdefault(char, []).append(pos)
        if unknown:
            what = "words" if self.kind == "word" else "characters"
            listed = "; ".join(
                f"{sym!r} at {pos[:5]}{' ...' if len(pos) > 5 else ''}"
                for sym, pos in list(unknown.items())[:10]
            )
            raise UserError(f"text has {what} outside the {self.kind} vocabulary: {listed}")

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (every symbol must be in the vocabulary)."""
        self.check(text)
        return list(self.backend.encode(text).ids)

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        """The text of ``ids`` (a list or a 1-D tensor of ids in [0, vocab_size))."""
        values = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        bad = [i for i in values if not isinstance(i, int) or not 0 <= i < self.vocab_size]
        if bad:
            raise UserError(f"ids must lie in [0, {self.vocab_size}), got {bad[:5]}")
        if self.kind == "word":
            return " ".join(self._id_to_token[i] for i in values)
        return "".join(self._id_to_token[i] for i in values)

    def encode_batch(self, texts: Sequence[str], length: int, pad: str | None = None) -> Tensor:
        """(len(texts), length) int64 ids; each text must encode to exactly ``length`` ids, or
        to at most ``length`` when ``pad`` (one in-vocabulary symbol) fills the rest."""
        pad_id = None if pad is None else self.token_id(pad)
        rows = []
        for k, text in enumerate(texts):
            ids = self.encode(text)
            if pad_id is not None and len(ids) < length:
                ids = ids + [pad_id] * (length - len(ids))
            if len(ids) != length:
                raise UserError(f"texts[{k}] encodes to {len(ids)} ids, expected {length}")
            rows.append(ids)
        return torch.tensor(rows, dtype=torch.long).reshape(len(rows), length)

    def decode_batch(self, ids: Tensor) -> list[str]:
        """The texts of a (B, L) batch of ids."""
        if ids.ndim != 2:
            raise UserError(f"ids must have shape (batch, length), got {tuple(ids.shape)}")
        return [self.decode(row) for row in ids]

    def token_id(self, token: str) -> int:
        """The id of one token (a character, word or BPE piece)."""
        vocab = self.backend.get_vocab()
        if token not in vocab:
            raise UserError(f"{token!r} is not a token of this {self.kind} tokenizer")
        return int(vocab[token])

    # --- persistence ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form: our kind and the library's own tokenizer JSON."""
        return {"kind": self.kind, "tokenizer": json.loads(self.backend.to_str())}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Tokenizer:
        if not isinstance(values, dict) or "kind" not in values or "tokenizer" not in values:
            raise UserError("a saved tokenizer is a dict with keys 'kind' and 'tokenizer'")
        backend = _library().Tokenizer.from_str(json.dumps(values["tokenizer"]))
        return cls(backend, values["kind"])

    def save(self, path: str | Path) -> None:
        """Write the JSON form to ``path``."""
        Path(path).write_text(json.dumps(self.to_dict()) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def __repr__(self) -> str:
        return f"Tokenizer(kind={self.kind!r}, vocab_size={self.vocab_size})"


def _refuse_nul(backend: Any, vocab: list[str]) -> Any:
    """WordLevel needs an unk token name; ``check`` guarantees it is never produced. Refuse the
    placeholder as a real symbol so ids stay 0..V-1."""
    if "\0" in vocab:
        raise UserError("the NUL character cannot be a token (it is the reserved unk name)")
    return backend
