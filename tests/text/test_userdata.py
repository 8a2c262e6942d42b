"""Training on a user's own text (issue 21): reading files, strict config keys for every preset,
the autoregressive sampler, temperature, no_grad, and the Python route's run folder."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from interpolant.errors import UserError
from interpolant.text.autoregressive import sample_autoregressive
from interpolant.text.loop import Tempered, masked_canvas, sample_text
from interpolant.text.train import (
    DATA_DEFAULTS,
    PRESETS,
    build_data,
    resolve,
    valid_keys,
)
from interpolant.text.userdata import load_file_data, read_sequences, strip_padding

pytest.importorskip("tokenizers")

LINES = ["the cat sat", "a dog ran far", "", "cats and dogs", "the end"]


def file_spec(path, **extra):
    return {**DATA_DEFAULTS["file"], "path": str(path), **extra}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_refuses_keys_it_would_ignore(preset):
    spec = resolve(preset)
    for section in ("data", "model", "path", "train"):
        with pytest.raises(UserError, match=f"{section}.bogus: not a key") as err:
            resolve(preset, {f"{section}.bogus": 1})
        assert ", ".join(valid_keys(spec)[section]) in str(err.value)  # the valid keys listed
    if spec["data"]["name"] != "file":  # the reported bug: data.path silently ignored
        with pytest.raises(UserError, match=r"data\.path: not a key"):
            resolve(preset, {"data.path": "corpus.txt"})


def test_markov_order_is_honoured():
    first = build_data(resolve("markov-char", {"data.n": 8})["data"])
    second = build_data(resolve("markov-char", {"data.n": 8, "data.order": 2})["data"])
    assert first.language.order == 1 and second.language.order == 2
    # The recorded exact entropy is the order-2 chain's own (not the order-1 one's).
    lang = second.language
    assert second.info["entropy_per_token"] == pytest.approx(lang.sequence_entropy() / 32)
    assert second.info["entropy_per_token"] != pytest.approx(first.info["entropy_per_token"])


def test_data_name_starts_from_that_kinds_defaults():
    spec = resolve("corpus-char", {"data.name": "file", "data.path": "x.txt"})
    assert spec["data"] == file_spec("x.txt")
    with pytest.raises(UserError, match="unknown text data 'nope'"):
        resolve("corpus-char", {"data.name": "nope"})


def test_reading_txt_jsonl_and_folders(tmp_path):
    (tmp_path / "a.txt").write_text("\n".join(LINES) + "\n")
    (tmp_path / "b.jsonl").write_text(
        json.dumps({"text": "json line", "id": 1}) + "\n\n" + json.dumps({"text": "two"}) + "\n"
    )
    assert read_sequences(tmp_path / "a.txt").texts == [x for x in LINES if x]
    assert read_sequences(tmp_path / "b.jsonl").texts == ["json line", "two"]
    both = read_sequences(tmp_path)
    assert both.texts == [*(x for x in LINES if x), "json line", "two"]
    assert both.where[-1].endswith("b.jsonl:3")
    with pytest.raises(UserError, match="no string field 'body'"):
        read_sequences(tmp_path / "b.jsonl", field="body")


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "no non-blank line"), (b"\n  \n", "no non-blank line"),
     (b"ab\x00cd\n", "looks binary"), (b"caf\xe9\n", "not UTF-8")],
)  # fmt: skip
def test_bad_files_are_refused(tmp_path, content, message):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(content)
    with pytest.raises(UserError, match=message):
        read_sequences(bad)
    with pytest.raises(UserError, match="no such file"):
        read_sequences(tmp_path / "missing.txt")


@pytest.mark.parametrize("tokenizer", ["char", "bpe"])
def test_rows_round_trip_to_the_lines(tmp_path, tokenizer):
    corpus = tmp_path / "c.txt"
    lines = [f"line {i} of the corpus" + "!" * (i % 3) for i in range(40)]
    corpus.write_text("\n".join(lines))
    train, held, tok, info = load_file_data(file_spec(corpus, tokenizer=tokenizer, bpe_vocab=40))
    assert train.shape == (38, info["length"]) and held.shape == (2, info["length"])
    assert info["length"] == max(len(tok.encode(x)) for x in lines[:38])
    decoded = [strip_padding(t, "\n") for t in tok.decode_batch(torch.cat([train, held]))]
    assert decoded == lines  # held out: the last 5 %, in order


def test_over_long_lines_are_truncated_with_a_count_or_refused(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("short\n" + "x" * 30 + "\nok ok\n" + "y" * 12 + "\n")
    held = tmp_path / "h.txt"
    held.write_text("x" * 11 + "\n")
    spec = file_spec(corpus, length=10, held_out=str(held))
    train, _, tok, info = load_file_data(spec)
    assert info["truncated_train"] == 2 and info["truncated_held_out"] == 1
    assert tok.decode(train[1].tolist()) == "x" * 10
    with pytest.raises(UserError, match=r"c.txt:2 is 30 tokens, longer than data.length=10"):
        load_file_data({**spec, "too_long": "refuse"})
    held.write_text("xQ\n")  # a character the tokenizer never saw
    with pytest.raises(UserError, match=r"held-out data: .*'Q'"):
        load_file_data(spec)


def test_tempered_denoiser_is_p_to_the_one_over_t():
    logits = torch.randn(2, 3, 5, dtype=torch.float64)
    tempered = Tempered(lambda x, t: logits, 0.5)
    p = torch.softmax(logits, -1)
    expected = p**2 / (p**2).sum(-1, keepdim=True)
    assert torch.allclose(torch.softmax(tempered(None, None), -1), expected)
    with pytest.raises(UserError, match="temperature must be > 0"):
        Tempered(lambda x, t: logits, 0.0)


class ChainLM(nn.Module):
    """A causal model that is exactly a first-order chain (init, trans) over V tokens."""

    causal = True

    def __init__(self, init, trans):
        super().__init__()
        self.vocab_size = init.numel()
        self.init, self.trans = nn.Parameter(init.log()), nn.Parameter(trans.log())
        self.grad_seen = []

    def forward(self, tokens):
        self.grad_seen.append(torch.is_grad_enabled())
        nxt = self.trans[tokens[:, :-1]]
        return torch.cat([self.init.expand(tokens.shape[0], 1, -1), nxt], 1)


def test_autoregressive_sampler_draws_the_chain_exactly():
    init = torch.tensor([0.5, 0.5, 1e-30])
    trans = torch.tensor([[1e-30, 1.0, 1e-30], [1e-30, 1e-30, 1.0], [1.0, 1e-30, 1e-30]])
    model = ChainLM(init, trans)
    out = sample_autoregressive(model, 200, 6, seed=3)
    x = out.tokens
    assert ((x[:, 1:] - x[:, :-1]) % 3 == 1).all()  # the deterministic cycle 0 -> 1 -> 2 -> 0
    assert out.nfe == 6 and (out.row_evals == 6).all() and not any(model.grad_seen)
    frac = float((x[:, 0] == 0).double().mean())  # init: 1/2 each for 0 and 1
    assert abs(frac - 0.5) < 4 * math.sqrt(0.25 / 200)
    # Per-sample streams: sample i does not depend on the batch; a prefix is kept, no call on it.
    assert torch.equal(sample_autoregressive(model, 7, 6, seed=3).tokens, x[:7])
    pre = sample_autoregressive(model, 4, 6, prefix=torch.tensor([2]), seed=0)
    assert (pre.tokens[:, :3] == torch.tensor([2, 0, 1])).all() and pre.nfe == 5
    # Temperature -> 0 makes the init draw nearly greedy among its tied top choices only.
    hot = sample_autoregressive(model, 100, 2, temperature=0.05, seed=1).tokens
    assert set(hot[:, 0].tolist()) <= {0, 1}
    with pytest.raises(UserError, match="causal text model"):
        sample_autoregressive(nn.Linear(2, 2), 1, 2)


def test_samplers_build_no_autograd_graph():
    seen = []

    def denoiser(tokens, t):
        seen.append(torch.is_grad_enabled())
        return torch.zeros(*tokens.shape, 4, requires_grad=True)

    canvas = masked_canvas(2, 5, 4)
    out = sample_text(denoiser, canvas, vocab_size=4, method="first_hitting", seed=0)
    assert seen and not any(seen) and not out.tokens.requires_grad


def test_the_python_route_writes_the_same_run_folder(tmp_path, capsys):
    from safetensors.torch import load_file

    from interpolant.cli import main
    from interpolant.paths.discrete import DiscretePath
    from interpolant.text import Tokenizer, load_text_run
    from interpolant.text.losses import TextObjective
    from interpolant.text.models import DiffusionTransformer
    from interpolant.text.train import evaluate_text_run, text_run_meta, write_text_meta
    from interpolant.train import TrainConfig, Trainer
    from interpolant.train.checkpoint import find_resume

    torch.set_num_threads(1)
    tok = Tokenizer.characters("abc\n")
    lines = ["abcab", "cab", "bcabca", "ab"] * 20
    rows = tok.encode_batch(lines, 8, pad="\n")
    model = DiffusionTransformer(tok.vocab_size, dim=16, depth=1, heads=2)
    objective = TextObjective("mask", tok.vocab_size, DiscretePath("log-linear", "mask"))
    run_dir = tmp_path / "mine"
    write_text_meta(run_dir, text_run_meta(model, objective, tok, length=8, pad="\n"))
    cfg = TrainConfig(steps=6, batch_size=8, run_dir=str(run_dir), progress=False, ema="halflife")
    trainer = Trainer(model, objective, rows, cfg)
    trainer.run()
    trainer.close()
    summary = evaluate_text_run(run_dir, rows[:16])
    assert summary["step"] == 6 and summary["nll_bound_per_token"] > 0
    # The EMA model: load_text_run's default, the checkpoint's ema.safetensors.
    run = load_text_run(run_dir)
    ema = load_file(find_resume(run_dir / "checkpoints", log=lambda m: None) / "ema.safetensors")
    assert all(torch.equal(run.model.state_dict()[k], v) for k, v in ema.items())
    assert run.path == objective.path and run.kind == "mask"
    assert (run_dir / "stats.jsonl").is_file()
    out = tmp_path / "s.jsonl"
    assert main(["sample", "text", str(run_dir), "-n", "2", "--out", str(out)]) == 0
    assert all(set(json.loads(r)["text"]) <= set("abc\n") for r in out.read_text().splitlines())
    held = tmp_path / "held.txt"
    held.write_text("abca\ncab\n")
    capsys.readouterr()
    assert main(["eval", "text", str(run_dir), "--held-out", str(held)]) == 0
    assert json.loads(capsys.readouterr().out)["n_held_out"] == 2
    assert main(["eval", "text", str(run_dir)]) == 2
    assert "pass --held-out FILE" in capsys.readouterr().err


def test_a_time_limit_stops_with_a_checkpoint(tmp_path):
    from interpolant.text.train import train_text

    torch.set_num_threads(1)
    tiny = {"data.n": 200, "data.length": 8, "model.dim": 16, "model.heads": 2, "model.depth": 1,
            "progress": False, "ema": "none", "steps": 10**6, "time_limit_s": 0.5}  # fmt: skip
    run = train_text("markov-char", tiny, tmp_path / "r", eval_n_t=1)
    assert 0 < run.step < 10**6
    assert json.loads((tmp_path / "r" / "eval.json").read_text())["step"] == run.step
    with pytest.raises(UserError, match=r"model\.neighbours is an option of the diffusion"):
        train_text("markov-char", {**tiny, "loss": "ar", "model.neighbours": 2}, tmp_path / "ar")
    assert "neighbours" not in resolve("markov-char", {"loss": "ar"})["model"]
