"""Corpora: the standard-library text is deterministic and offline, records follow the schema and
render to JSON that parses back to the same record, chunking windows are exact."""

import json

import pytest
import torch

from interpolant.text.corpora import (
    RECORD_SCHEMA,
    check_record,
    chunk,
    fingerprint,
    parse_json_record,
    records,
    render_json,
    render_text,
    stdlib_docs,
    zen_of_python,
)


def test_stdlib_docs_is_deterministic_english(capsys):
    text = stdlib_docs()
    assert capsys.readouterr().out == ""  # `import this` printed nothing
    assert text.startswith("The Zen of Python, by Tim Peters")
    assert "Beautiful is better than ugly." in zen_of_python()
    assert len(text) > 20_000 and text.count(" the ") > 200
    assert fingerprint(stdlib_docs()) == fingerprint(text)
    with pytest.raises(RuntimeError, match="-OO"):
        stdlib_docs(modules=(), min_chars=10_000)


def test_records_round_trip_through_json():
    recs = records(200, seed=3, p_missing=0.3)
    assert records(200, seed=3, p_missing=0.3) == recs  # seeded
    missing = sum(r[k] is None for r in recs for k, (_, nullable) in RECORD_SCHEMA.items())
    assert 0.2 < missing / (3 * len(recs)) < 0.4  # three nullable fields, p = 0.3
    for rec in recs:
        text = render_json(rec)
        assert list(json.loads(text)) == list(RECORD_SCHEMA)  # the fixed key order
        assert parse_json_record(text + "   ") == rec
        assert rec["name"] in render_text(rec)
        assert 1900 <= rec["birth_year"] <= 2000


def test_schema_violations_are_named():
    rec = records(1)[0]
    with pytest.raises(ValueError, match="'birth_year' must be of type integer"):
        check_record({**rec, "birth_year": "1950"})
    with pytest.raises(ValueError, match="'name' must be of type string"):
        check_record({**rec, "name": None})
    with pytest.raises(ValueError, match="record keys"):
        check_record({"name": "x"})
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_json_record('{"name": ')


def test_chunk_windows():
    rows = chunk(list(range(10)), 4, 3)
    assert rows.tolist() == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    assert rows.dtype == torch.long
    with pytest.raises(ValueError, match="at least length=4"):
        chunk([1, 2], 4)
