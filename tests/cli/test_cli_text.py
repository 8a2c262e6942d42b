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
    out = tmp_path / "s.jsonl"
    args = ["sample", "text", str(markov_run), "-n", "3", "--out", str(out)]
    assert main([*args, "--prefix", "abc"]) == 0
    texts = [json.loads(line)["text"] for line in out.read_text().splitlines()]
    assert len(texts) == 3 and all(t.startswith("abc") and len(t) == 32 for t in texts)
    summary = capsys.readouterr().out.splitlines()[-1]
    # first hitting: one call per masked token
    assert f"{32 - 3:.1f} model calls per sample (29 batched" in summary
    assert "true NLL" in summary and "distinct" in summary
    assert main([*args, "--sampler", "ancestral", "--steps", "16", "--cache"]) == 0
    calls = float(capsys.readouterr().out.split(" model calls per sample")[0].split()[-1])
    assert calls <= 16


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
    out = tmp_path / "o.jsonl"
    args = ["sample", "json", str(run_dir), "--schema", str(schema), "-n", "2", "--steps", "4"]
    assert main([*args, "--budget", "6", "--out", str(out)]) == 0
    texts = [json.loads(line)["text"] for line in out.read_text().splitlines()]
    assert len(texts) == 2
    assert all(text.startswith('{"name": ') and text.endswith("}") for text in texts)
    assert "valid JSON" in capsys.readouterr().out


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


FILE_TINY = ["steps=12", "model.dim=32", "model.depth=1", "progress=false", "batch_size=16"]


def test_train_sample_and_eval_on_a_users_file(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"row {i % 7} says hi" + "!" * (i % 30) for i in range(120)))
    run = tmp_path / "run"
    argv = ["train", "text", "--data", str(corpus), "--run-dir", str(run), "data.length=24"]
    assert main([*argv, "--too-long", "refuse", *FILE_TINY]) == 2
    assert "longer than data.length=24" in capsys.readouterr().err
    assert main([*argv, "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["data"]["path"] == str(corpus) and printed["data"]["length"] == 24
    assert main([*argv, *FILE_TINY]) == 0
    assert "truncated" in capsys.readouterr().out
    meta = json.loads((run / "text.json").read_text())
    assert meta["spec"]["data"]["length"] == 24 and meta["tokenizer"]["kind"] == "char"
    bound = json.loads((run / "eval.json").read_text())["nll_bound_per_token"]
    # Sampling: flags reach their sampler, samples go to JSON lines, pads are stripped.
    out = tmp_path / "s.jsonl"
    base = ["sample", "text", str(run), "-n", "4", "--out", str(out), "--seed", "1"]
    flags = ["--sampler", "confidence", "--temperature", "1", "--order", "margin"]
    assert main([*base, *flags, "--block-length", "8", "--steps", "12"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["index"] for r in rows] == [0, 1, 2, 3]
    assert all(len(r["text"]) <= 24 and not r["text"].endswith("\n") for r in rows)
    assert "12.0 model calls per sample" in capsys.readouterr().out
    assert main([*base, "--group", "4", "--temperature", "0.5", "--prefix", "row"]) == 0
    assert "6.0 model calls per sample" in capsys.readouterr().out  # 21 masked / 4 per call
    assert main([*base, "--group", "2", "--sampler", "confidence"]) == 2
    assert "--group is an option of --sampler first_hitting" in capsys.readouterr().err
    assert main([*base, "--prefix", "row ~"]) == 2
    assert "'~' at [4]" in capsys.readouterr().err  # a character the tokenizer never saw
    assert main([*base, "--sampler", "autoregressive"]) == 2
    assert "needs a causal" in capsys.readouterr().err
    # eval text: the run's own held-out rows again give the same bound (same seed).
    assert main(["eval", "text", str(run)]) == 0
    assert json.loads(capsys.readouterr().out)["nll_bound_per_token"] == bound


def test_an_autoregressive_run_samples_left_to_right(tmp_path, capsys):
    run = tmp_path / "ar"
    args = ["--preset", "markov-char", "--run-dir", str(run), "loss=ar", *TINY]
    assert main(["train", "text", *args]) == 0
    capsys.readouterr()
    assert main(["sample", "text", str(run), "-n", "3", "--prefix", "ab"]) == 0
    printed = capsys.readouterr().out
    assert "30.0 model calls per sample" in printed and "autoregressive" in printed
    rows = (run / "samples.jsonl").read_text().splitlines()
    assert all(json.loads(r)["text"].startswith("ab") for r in rows)
    assert main(["sample", "text", str(run), "--sampler", "first_hitting"]) == 2
    assert "--sampler autoregressive" in capsys.readouterr().err


def test_unknown_text_keys_are_refused_on_the_command_line(capsys):
    assert main(["train", "text", "--preset", "corpus-char", "data.path=x.txt"]) == 2
    assert "valid keys: length, name, stride" in capsys.readouterr().err
    assert main(["train", "text", "--tokenizer", "bpe"]) == 2
    assert "--tokenizer needs --data" in capsys.readouterr().err
    assert main(["train", "text", "--help"]) == 0
    helped = capsys.readouterr().out
    assert "data.order=1" in helped and "model.: depth, dim" in helped
