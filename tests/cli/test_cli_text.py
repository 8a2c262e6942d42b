"""``interpolant train text``, ``sample text`` and ``sample json`` end to end on tiny runs."""

from __future__ import annotations

import json

import pytest
import torch

from interpolant.cli import main

TINY = ["steps=20", "data.n=500", "model.dim=32", "model.depth=1", "progress=false"]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def markov_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("text") / "markov"
    torch.set_num_threads(1)
    assert main(["train", "text", "--preset", "markov-char", "--run-dir", str(run_dir), *TINY]) == 0
    return run_dir


def test_train_text_writes_the_bound_and_the_exact_entropy(markov_run):
    summary = json.loads((markov_run / "eval.json").read_text())
    assert summary["step"] == 20
    # An upper bound on the NLL cannot beat the true entropy (up to its Monte Carlo error).
    assert (
        summary["nll_bound_per_token"]
        > summary["entropy_per_token"] - 4 * summary["nll_bound_stderr"]
    )


def test_sample_text_samplers_prefix_and_records(markov_run, tmp_path, capsys):
    out = tmp_path / "s.json"
    args = ["sample", "text", str(markov_run), "-n", "3", "--out", str(out)]
    assert main([*args, "--prefix", "abc"]) == 0
    record = json.loads(out.read_text())
    assert record["nfe"] == 32 - 3  # first hitting: one call per masked token
    assert all(text.startswith("abc") and len(text) == 32 for text in record["texts"])
    assert record["true_nll_per_token"] > 0
    assert main([*args, "--sampler", "ancestral", "--steps", "16", "--cache"]) == 0
    assert json.loads(out.read_text())["nfe"] <= 16


def test_text_commands_say_what_is_wrong(markov_run, tmp_path, capsys):
    run = str(markov_run)
    assert main(["sample", "text", run, "--length", "999"]) == 2
    assert "longer than the model's context" in capsys.readouterr().err
    assert main(["sample", "text", run, "--prefix", "xyz!"]) == 2
    assert "outside" in capsys.readouterr().err
    assert main(["sample", "text", run, "--cache"]) == 2
    assert "ancestral" in capsys.readouterr().err
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "array", "items": {"type": "string"}}))
    assert main(["sample", "json", run, "--schema", str(schema)]) == 2
    assert capsys.readouterr().err.startswith("interpolant: error:")
    assert main(["train", "text", "--preset", "nope"]) == 2
    assert "unknown text preset" in capsys.readouterr().err


def test_sample_json_keeps_the_scaffold(tmp_path, capsys):
    run_dir = tmp_path / "json"
    assert (
        main(["train", "text", "--preset", "json-records", "--run-dir", str(run_dir), *TINY]) == 0
    )
    schema = tmp_path / "schema.json"
    schema.write_text(
        json.dumps({"type": "object", "properties": {"name": {"type": "string", "maxLength": 6}}})
    )
    out = tmp_path / "o.json"
    args = ["sample", "json", str(run_dir), "--schema", str(schema), "-n", "2", "--steps", "4"]
    assert main([*args, "--budget", "6", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert all(text.startswith('{"name": ') and text.endswith("}") for text in record["texts"])
    assert 0.0 <= record["json_valid"] <= 1.0


def test_sample_json_uses_the_layout_the_run_was_trained_in():
    # `sample json` builds its scaffold with scaffold_options(the run's data.layout): for the
    # preset, every aligned training row (values padded to their slots) agrees with that
    # scaffold on all its fixed tokens (a wrong pad or quoting breaks the decoding below).
    from interpolant.text import corpora
    from interpolant.text.s3 import build_scaffold
    from interpolant.text.train import build_data, resolve, scaffold_options

    spec = resolve("json-records")
    data = build_data({**spec["data"], "n": 64, "p_aligned": 1.0})
    scaffold = build_scaffold(
        corpora.record_json_schema(), data.tokenizer, **scaffold_options(spec["data"]["layout"])
    )
    assert data.train.shape[1] == scaffold.length
    fixed = scaffold.fixed
    assert fixed.any() and (data.train[:, fixed] == scaffold.tokens[fixed]).all()
    # ... and decodes each row to the record the row spells (pads and nulls read as trained).
    pad = scaffold_options(spec["data"]["layout"])["pad"]
    for row in data.train:
        spelled = corpora.strip_pads(data.tokenizer.decode(row.tolist()), pad)
        assert json.loads(scaffold.decode(row, data.tokenizer)) == json.loads(spelled)
    assert scaffold_options(None) == {}
