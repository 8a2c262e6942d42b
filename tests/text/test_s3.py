"""S3 scaffolds (round trips, schema errors, decoding only the slots) and the regular-language
oracle behind the S3 reproduction (forward-backward against enumeration)."""

from __future__ import annotations

import json

import pytest
import torch

from interpolant.text import corpora
from interpolant.text.markov import all_sequences
from interpolant.text.regular import Automaton
from interpolant.text.s3 import build_scaffold, parse_valid, sample_json, schema_errors
from interpolant.text.tokenize import Tokenizer

TOK = Tokenizer.characters(
    sorted(set("".join(corpora.render_json(r) for r in corpora.records(300))) | set(" nul"))
)
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 15},
        "birth_year": {"type": "integer", "minimum": 1900, "maximum": 2000},
        "birth_place": {"type": ["string", "null"], "maxLength": 5},
        "occupation": {"enum": [*corpora.OCCUPATIONS, None]},
        "spouse": {"type": ["string", "null"], "maxLength": 15},
    },
    "required": ["name", "birth_year"],
}


@pytest.mark.parametrize("quote_strings", [True, False])
def test_scaffold_round_trips_records(quote_strings: bool) -> None:
    sc = build_scaffold(SCHEMA, TOK, pad=" ", quote_strings=quote_strings)
    mask = TOK.vocab_size
    assert bool((sc.tokens[sc.fixed] != mask).all() and (sc.tokens[~sc.fixed] == mask).all())
    assert sc.meta["n_slot_tokens"] == int((~sc.fixed).sum())
    for rec in corpora.records(20, seed=5):
        filled = sc.fill(rec, TOK)
        assert bool((filled[sc.fixed] == sc.tokens[sc.fixed]).all())
        text = sc.decode(filled, TOK)
        assert json.loads(text) == rec and parse_valid(text, SCHEMA)
        assert text == corpora.render_json(rec)  # the layout is json.dumps'


def test_nested_objects_and_booleans() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "boolean"}, "b": {"type": "object", "properties": {
            "c": {"type": "integer"}, "d": {"enum": ["x", "yy"]}}}},
    }  # fmt: skip
    tok = Tokenizer.characters('{}":, abcdxytruefals0123456789-')
    sc = build_scaffold(schema, tok, budget=4)
    obj = {"a": False, "b": {"c": -12, "d": "yy"}}
    assert json.loads(sc.decode(sc.fill(obj, tok), tok)) == obj
    assert [s.path for s in sc.slots] == [("a",), ("b", "c"), ("b", "d")]
    with pytest.raises(ValueError, match="needs 5 tokens, budget 4"):
        sc.fill({"a": True, "b": {"c": 12345, "d": "x"}}, tok)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"type": "object", "properties": {"a": {"type": "array"}}}, "/a: arrays of unknown"),
        ({"type": "object", "properties": {"a": {"$ref": "#/x"}}}, "/a uses '\\$ref'"),
        ({"type": "object", "properties": {"a": {"anyOf": []}}}, "/a uses 'anyOf'"),
        ({"type": "object", "properties": {"a": {"type": ["string", "integer"]}}}, "unions"),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "object", "properties": {"b": {"type": "integer"}}}},
                "required": [],
            },
            "nullable object",
        ),
        ({"type": "string"}, "root\\) must be an object"),
        ({"type": "object"}, "non-empty 'properties'"),
    ],
)
def test_unsupported_schemas_are_named(bad: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_scaffold(bad, TOK)


def test_schema_errors_find_each_problem() -> None:
    good = corpora.records(1, seed=2)[0]
    assert schema_errors(good, SCHEMA) == []
    bad = {**good, "birth_year": 1800, "name": None, "extra": 1}
    errors = schema_errors(bad, SCHEMA)
    assert any("/birth_year: 1800 outside" in e for e in errors)
    assert any("/name: null is not allowed" in e for e in errors)
    assert any("unexpected key 'extra'" in e for e in errors)
    assert not parse_valid('{"name": "A"', SCHEMA)


def tiny_language():  # type: ignore[no-untyped-def]
    """ "a" then ("b" | "cc"), each optionally followed by up to 2 pads, in length 5 (V = 4,
    pad id 3)."""
    auto = Automaton(4)
    a = auto.padded(auto.literal([0]), 3, 2, p=0.4)
    b = auto.choice([auto.literal([1]), auto.literal([2, 2])], [0.3, 0.7])
    return auto.language(auto.seq([a, b]), 5, 3)


def test_regular_language_denoiser_matches_enumeration() -> None:
    lang = tiny_language()
    seqs = all_sequences(4, 5)
    w = lang.log_weight(seqs).exp()
    assert int((w > 0).sum()) == 6  # a b and a cc, with 0, 1 or 2 pads after a
    p = w / w.sum()
    m = 4
    tokens = torch.tensor([[m, m, m, m, m], [0, m, m, m, 3], [m, 3, m, m, m]])
    post = lang.posterior(tokens)
    for b, row in enumerate(tokens):
        keep = p * ((row == m) | (seqs == row)).all(1)
        keep = keep / keep.sum()
        brute = torch.stack([(keep[:, None] * (seqs == v)).sum(0) for v in range(4)], 1)
        torch.testing.assert_close(post[b], brute, atol=1e-12, rtol=0)


def test_sample_json_fills_only_slots_with_an_exact_oracle() -> None:
    # The oracle knows one record; whitespace after values is random. S3 decoding recovers it.
    rec = corpora.records(1, seed=9)[0]
    sc = build_scaffold(SCHEMA, TOK, quote_strings=False)
    auto = Automaton(TOK.vocab_size)
    pad = TOK.encode(" ")[0]
    parts = []
    for i, key in enumerate(SCHEMA["properties"]):
        parts.append(auto.literal(TOK.encode(("{" if i == 0 else ", ") + json.dumps(key) + ": ")))
        value = json.dumps(rec[key])
        slot = next(s for s in sc.slots if s.path == (key,))
        budget = slot.stop - slot.start
        parts.append(auto.padded(auto.literal(TOK.encode(value)), pad, budget - len(value)))
    parts.append(auto.literal(TOK.encode("}")))
    lang = auto.language(auto.seq(parts), sc.length, pad)
    out = sample_json(lang, TOK, SCHEMA, n=3, steps=4, quote_strings=False)
    assert out.sample.nfe == 4
    assert all(json.loads(t) == rec for t in out.texts)
    assert bool((out.tokens[:, sc.fixed] == sc.tokens[sc.fixed]).all())
    with pytest.raises(ValueError, match="shorter than prompt"):
        sample_json(lang, TOK, SCHEMA, length=10)


def test_null_pad_layout_round_trips_and_cannot_break_the_syntax() -> None:
    """The paper's layout: a nullable string keeps its quotes in the scaffold and an all-pad
    slot is null, so whatever letters and pads fill the slots, the text parses (the default
    layout's `"ull` failure cannot be written) and equals ``strip_pads`` of the raw canvas."""
    tok = Tokenizer.characters(sorted(TOK.symbols | {"~"}))
    props = {**SCHEMA["properties"], "occupation": {"type": "integer"}}
    schema = {**SCHEMA, "properties": props, "required": ["name", "birth_year", "occupation"]}
    sc = build_scaffold(schema, tok, pad="~", null_pad=True)
    nullable = [s for s in sc.slots if s.nullable]
    assert nullable and all(s.quoted for s in nullable)
    for slot in nullable:  # quotes are fixed tokens just outside the slot
        assert sc.fixed[slot.start - 1] and sc.fixed[slot.stop]
        assert tok.decode([int(sc.tokens[slot.start - 1]), int(sc.tokens[slot.stop])]) == '""'
    for rec in corpora.records(20, seed=5):
        rec = {**rec, "birth_place": rec["birth_place"] and rec["birth_place"][:5], "occupation": 7}
        filled = sc.fill(rec, tok)
        text = sc.decode(filled, tok)
        assert json.loads(text) == rec and text == json.dumps(rec)
        assert text == corpora.strip_pads(tok.decode(filled.tolist()), "~")
    gen = torch.Generator().manual_seed(0)
    letters = torch.tensor(tok.encode("abcABE ~~~~~"))
    nulls = 0
    for _ in range(200):
        row = sc.tokens.clone()
        for slot in sc.slots:
            n = slot.stop - slot.start
            if slot.quoted:
                row[slot.start : slot.stop] = letters[
                    torch.randint(len(letters), (n,), generator=gen)
                ]
            else:
                row[slot.start : slot.stop] = torch.tensor(tok.encode("12" + "~" * (n - 2)))
        text = sc.decode(row, tok)
        obj = json.loads(text)  # always parses
        assert text == corpora.strip_pads(tok.decode(row.tolist()), "~")
        nulls += obj["spouse"] is None
    assert nulls == 0  # 15 random characters are almost never all pads
    row = sc.fill({**rec, "spouse": None}, tok)
    assert json.loads(sc.decode(row, tok))["spouse"] is None
    with pytest.raises(ValueError, match="null_pad=True needs quote_strings"):
        build_scaffold(schema, tok, pad="~", quote_strings=False, null_pad=True)
