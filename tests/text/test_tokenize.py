"""Tokenizers: lossless round trips, out-of-vocabulary errors naming symbols and positions,
save/load identity, BPE compresses its training corpus."""

import pytest
import torch

pytest.importorskip("tokenizers")

from interpolant.text.corpora import stdlib_docs, zen_of_python
from interpolant.text.tokenize import Tokenizer


def test_characters_round_trip_and_ids_in_alphabet_order():
    tok = Tokenizer.characters("ab c\n")
    assert tok.vocab_size == 5
    assert tok.encode("ab c\nba") == [0, 1, 2, 3, 4, 1, 0]
    assert tok.decode(tok.encode("c a\n\nb")) == "c a\n\nb"


def test_unknown_characters_are_named_with_positions():
    tok = Tokenizer.characters("abc")
    with pytest.raises(ValueError, match=r"'z' at \[1, 4\]; 'Q' at \[2\]"):
        tok.encode("azQbz")
    with pytest.raises(ValueError, match="ids must lie in"):
        tok.decode([0, 3])


def test_words_round_trip_and_unknown_word():
    tok = Tokenizer.words(["the", "cat", "<pad>"])
    assert tok.encode("the cat the") == [0, 1, 0]
    assert tok.decode([1, 0, 2]) == "cat the <pad>"
    with pytest.raises(ValueError, match=r"'dog' at \[4\]"):
        tok.encode("the dog")


def test_bpe_is_lossless_and_compresses_its_corpus():
    text = zen_of_python()
    tok = Tokenizer.train_bpe(text, vocab_size=200)
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert len(ids) < 0.6 * len(text)  # merges shorten the stream
    assert all(0 <= i < tok.vocab_size for i in ids)
    with pytest.raises(ValueError, match="outside the bpe vocabulary"):
        tok.encode("\u00e9t\u00e9")


def test_save_load_gives_the_same_ids(tmp_path):
    text = stdlib_docs()[:5000]
    for tok in (Tokenizer.characters(sorted(set(text))), Tokenizer.train_bpe(text, 300)):
        tok.save(tmp_path / "tok.json")
        back = Tokenizer.load(tmp_path / "tok.json")
        assert back.kind == tok.kind and back.vocab_size == tok.vocab_size
        assert back.encode(text) == tok.encode(text)


def test_encode_batch_pads_and_checks_length():
    tok = Tokenizer.characters("ab ")
    rows = tok.encode_batch(["ab", "a"], 3, pad=" ")
    assert rows.dtype == torch.long and rows.tolist() == [[0, 1, 2], [0, 2, 2]]
    with pytest.raises(ValueError, match=r"texts\[0\] encodes to 2 ids, expected 3"):
        tok.encode_batch(["ab"], 3)
    assert tok.decode_batch(rows) == ["ab ", "a  "]


def test_bad_construction_is_refused():
    with pytest.raises(ValueError, match="single characters"):
        Tokenizer.characters(["ab"])
    with pytest.raises(ValueError, match="without whitespace"):
        Tokenizer.words(["a b"])
    with pytest.raises(ValueError, match="vocab_size must be an int >= the corpus alphabet"):
        Tokenizer.train_bpe("abcdef", 3)
