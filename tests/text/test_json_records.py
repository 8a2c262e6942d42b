"""JSON records for S3 with a trained model: the slot layout (valid JSON whose aligned case is
exactly the S3 canvas), the corpus' value domain behind the field accuracy, the json-records
data and preset, and why the denoiser needs absolute positions on an all-mask canvas."""

from __future__ import annotations

import json

import pytest
import torch

from interpolant.text import corpora
from interpolant.text.models import DiffusionTransformer, build_text_model
from interpolant.text.s3 import build_scaffold
from interpolant.text.train import (
    NULL_PAD,
    build_data,
    build_model_and_objective,
    records_scaffold,
    records_tokenizer,
    resolve,
)

TOK = records_tokenizer()
SCAFFOLD = build_scaffold(corpora.record_json_schema(), TOK, pad=" ", quote_strings=False)
BUDGETS = {slot.path[-1]: slot.stop - slot.start for slot in SCAFFOLD.slots}


def test_aligned_layout_is_the_s3_canvas_and_ragged_layouts_parse() -> None:
    gen = torch.Generator().manual_seed(0)
    recs = corpora.records(50, seed=1)
    for rec in recs:
        aligned = corpora.render_json_slotted(rec, BUDGETS, gen, p_aligned=1.0)
        assert torch.equal(torch.tensor(TOK.encode(aligned)), SCAFFOLD.fill(rec, TOK))
        ragged = corpora.render_json_slotted(rec, BUDGETS, gen, p_aligned=0.0)
        assert corpora.parse_json_record(ragged) == rec
        assert len(ragged) <= SCAFFOLD.length
    lengths = {len(corpora.render_json_slotted(recs[0], BUDGETS, gen, 0.0)) for _ in range(30)}
    assert len(lengths) > 3  # the whitespace really varies
    with pytest.raises(ValueError, match="too short"):
        corpora.render_json_slotted(recs[0], {**BUDGETS, "name": 3}, gen)
    with pytest.raises(ValueError, match="budgets must name"):
        corpora.render_json_slotted(recs[0], {"name": 17}, gen)
    with pytest.raises(ValueError, match="p_aligned"):
        corpora.render_json_slotted(recs[0], BUDGETS, gen, p_aligned=1.5)


def test_null_pad_layout_is_the_paper_canvas_and_strips_to_the_record() -> None:
    tok = records_tokenizer(NULL_PAD)
    scaffold = records_scaffold(tok, null_pad=True)
    budgets = {slot.path[-1]: slot.stop - slot.start for slot in scaffold.slots}
    assert scaffold.length == SCAFFOLD.length  # same canvas length as the "slots" layout
    gen = torch.Generator().manual_seed(0)
    recs = corpora.records(80, seed=3)
    assert any(r["spouse"] is None for r in recs)
    for rec in recs:
        aligned = corpora.render_json_slotted(rec, budgets, gen, 1.0, NULL_PAD, null_pad=True)
        assert torch.equal(torch.tensor(tok.encode(aligned)), scaffold.fill(rec, tok))
        assert scaffold.decode(scaffold.fill(rec, tok), tok) == corpora.render_json(rec)
        ragged = corpora.render_json_slotted(rec, budgets, gen, 0.0, NULL_PAD, null_pad=True)
        assert corpora.parse_json_record(corpora.strip_pads(ragged, NULL_PAD)) == rec
        assert '""' not in ragged  # a null keeps at least one pad between its quotes
    with pytest.raises(ValueError, match="pad must be one character outside"):
        corpora.render_json_slotted(recs[0], budgets, gen, pad="_", null_pad=True)  # birth_year
    with pytest.raises(ValueError, match="pad must be one character"):
        corpora.strip_pads("{}", "~~")
    data = build_data({"name": "json-records", "n": 100, "layout": "null-pad"})
    assert data.info["pad"] == NULL_PAD and data.tokenizer.to_dict() == tok.to_dict()
    for row in data.tokenizer.decode_batch(data.train):
        corpora.parse_json_record(corpora.strip_pads(row, NULL_PAD))
    assert resolve("json-records")["data"]["layout"] == "null-pad"  # the preset's layout


def test_domain_field_accuracy() -> None:
    for rec in corpora.records(100, seed=2):
        assert corpora.record_field_accuracy(corpora.render_json(rec)) == 1.0
    rec = {"name": "Alan Berto", "birth_year": 1950, "birth_place": None, "occupation": "poet",
           "spouse": "Joia Kane"}  # fmt: skip
    assert corpora.record_field_accuracy(json.dumps(rec)) == 1.0
    wrong = [("name", "Alan berto"), ("name", "Alanx Berto"), ("name", None),
             ("birth_year", 1899), ("birth_year", 1950.0), ("birth_year", True),
             ("birth_place", "Paris"), ("occupation", ""), ("spouse", "Alan  Berto")]  # fmt: skip
    for key, bad in wrong:
        assert corpora.record_field_accuracy(json.dumps({**rec, key: bad})) == pytest.approx(0.8)
    missing = {k: v for k, v in rec.items() if k != "spouse"}
    assert corpora.record_field_accuracy(json.dumps({**missing, "x": 1})) == pytest.approx(0.8)
    assert corpora.record_field_accuracy('{"name": "Alan Berto",') == 0.0
    assert corpora.record_field_accuracy("[1, 2]") == 0.0
    with pytest.raises(ValueError, match="unknown record field"):
        corpora.in_record_domain("age", 3)


def test_json_records_slot_data_and_preset() -> None:
    data = build_data({"name": "json-records", "n": 200, "layout": "slots", "p_aligned": 0.5})
    assert data.tokenizer.to_dict() == TOK.to_dict()
    assert data.train.shape == (200, SCAFFOLD.length) and data.info["layout"] == "slots"
    texts = data.tokenizer.decode_batch(data.train)
    recs = [corpora.parse_json_record(t) for t in texts]  # every row is valid JSON
    aligned = sum(t == TOK.decode(SCAFFOLD.fill(r, TOK)) for t, r in zip(texts, recs, strict=True))
    assert 70 < aligned < 130  # about half the rows are S3 canvases
    with pytest.raises(ValueError, match=r"data\.layout"):
        build_data({"name": "json-records", "n": 10, "layout": "pretty"})
    spec = resolve("json-records")
    model, _, _ = build_model_and_objective(spec, TOK.vocab_size)
    assert model.config()["max_length"] >= SCAFFOLD.length
    causal, _, _ = build_model_and_objective(resolve("json-records", {"loss": "ar"}), 10)
    assert "max_length" not in causal.config()


def test_all_mask_canvas_needs_absolute_positions() -> None:
    torch.manual_seed(0)
    canvas = torch.full((2, 12), 7)  # vocabulary 7: id 7 is the mask
    rotary = DiffusionTransformer(7, dim=32, depth=2, heads=2)
    logits = rotary(canvas, torch.ones(2))
    # Every value vector is the mask's, so attention returns it whatever the rotary scores.
    torch.testing.assert_close(logits, logits[:, :1].expand_as(logits), atol=1e-5, rtol=1e-5)
    absolute = DiffusionTransformer(7, dim=32, depth=2, heads=2, max_length=16)
    logits = absolute(canvas, torch.ones(2))
    assert float((logits - logits[:, :1]).abs().amax().detach()) > 1e-3
    assert "max_length" not in rotary.config()  # old configs and checkpoints are unchanged
    rebuilt = build_text_model(absolute.config())
    rebuilt.load_state_dict(absolute.state_dict())
    torch.testing.assert_close(rebuilt(canvas, torch.ones(2)), logits)
    with pytest.raises(ValueError, match="max_length 16"):
        absolute(torch.full((1, 17), 7), torch.ones(1))
    with pytest.raises(ValueError, match="max_length must be"):
        DiffusionTransformer(7, dim=32, heads=2, max_length=0)
