"""Text training through the project's trainer: the bound falls toward the exact entropy of a
tiny Markov language, runs load back with tokenizer and schedule, overrides are checked, the data
builders are sound, and 2 gloo ranks equal one process."""

import json
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from interpolant.paths.discrete import DiscretePath
from interpolant.text.corpora import parse_json_record
from interpolant.text.losses import TextObjective, elbo_nll
from interpolant.text.models import CausalTransformer, DiffusionTransformer
from interpolant.text.train import build_data, load_text_run, resolve, train_text
from interpolant.train import TrainConfig, Trainer
from interpolant.train.checkpoint import checkpoint_name

pytest.importorskip("tokenizers")

TINY = {
    "data.vocab_size": 4,
    "data.length": 12,
    "data.n": 4000,
    "data.concentration": 0.2,
    "model.dim": 32,
    "model.heads": 2,
    "batch_size": 32,
    "lr": 3e-3,
    "progress": False,
    "ema": "none",
}


def test_training_moves_the_bound_to_the_entropy(tmp_path):
    torch.manual_seed(0)
    run = train_text("markov-char", {**TINY, "steps": 250, "checkpoint_every": 250}, tmp_path)
    report = json.loads((tmp_path / "eval.json").read_text())
    entropy = report["entropy_per_token"]
    assert run.step == 250 and run.kind == "mask" and isinstance(run.path, DiscretePath)
    # Reference: an untrained network of the same shape.
    held = run.language.sample(512, torch.Generator().manual_seed(9))
    untrained = DiffusionTransformer(4, dim=32, depth=2, heads=2).eval()
    with torch.no_grad():
        before = float(elbo_nll(untrained, held, run.path, n_t=8).mean())
        after = float(elbo_nll(run.model, held, run.path, n_t=8).mean())
    assert before > math.log(4) - 0.05  # an untrained model is about uniform
    assert after < before - 0.25
    assert after - entropy < 0.4 * (before - entropy)  # most of the gap is closed
    assert after > entropy - 0.05  # an upper bound (up to Monte-Carlo error)
    assert report["nll_bound_per_token"] == pytest.approx(after, abs=0.1)
    # The loaded run decodes and its language is the training one.
    assert set(run.tokenizer.decode(held[0])) <= set("abcd")
    assert torch.equal(run.language.log_prob(held), load_text_run(tmp_path).language.log_prob(held))


@pytest.mark.parametrize(
    "loss,model_type", [("uniform", DiffusionTransformer), ("ar", CausalTransformer)]
)
def test_other_losses_train_and_load(tmp_path, loss, model_type):
    run = train_text("markov-char", {**TINY, "steps": 3, "loss": loss}, tmp_path)
    assert isinstance(run.model, model_type) and run.kind == loss
    if loss == "uniform":
        assert run.model.config()["time_conditioning"] and run.path.kind == "uniform"
    else:
        assert run.path is None
    assert math.isfinite(json.loads((tmp_path / "eval.json").read_text())["nll_bound_per_token"])


def test_overrides_are_checked():
    spec = resolve("pcfg", {"steps": "12", "model.dim": "48", "train.lr": 0.01, "loss": "ar"})
    assert spec["train"]["steps"] == 12 and spec["model"]["dim"] == 48 and spec["loss"] == "ar"
    with pytest.raises(ValueError, match="unknown override 'dimension'"):
        resolve("pcfg", {"dimension": 3})
    with pytest.raises(ValueError, match=r"train\.nope: not a key of the train section; valid"):
        resolve("pcfg", {"train.nope": 3})
    with pytest.raises(ValueError, match="unknown text preset"):
        resolve("nope")
    with pytest.raises(ValueError, match="loss must be"):
        resolve("pcfg", {"loss": "sedd"})


def test_data_builders():
    recs = build_data({"name": "json-records", "n": 60, "p_missing": 0.3})
    assert recs.train.shape[0] == 60 and recs.train.dtype == torch.long
    for text in recs.tokenizer.decode_batch(recs.held_out[:20]):
        parse_json_record(text)  # trailing pad spaces keep the JSON valid
    docs = build_data({"name": "stdlib-docs", "length": 64, "stride": 16})
    train_rows = {tuple(r) for r in docs.train.tolist()}
    assert not train_rows & {tuple(r) for r in docs.held_out.tolist()}
    assert "The Zen of Python" in docs.tokenizer.decode(docs.train[0])
    pcfg = build_data({"name": "pcfg", "length": 8, "n": 50})
    assert bool(torch.isfinite(pcfg.language.log_prob(pcfg.train)).all())
    assert pcfg.tokenizer.vocab_size == pcfg.language.vocab_size


def test_trainer_checks_token_data(tmp_path):
    obj = TextObjective("mask", 4, DiscretePath())
    cfg = TrainConfig(run_dir=str(tmp_path), steps=1, batch_size=4, progress=False)
    with pytest.raises(ValueError, match="data must be an int64 tensor"):
        Trainer(DiffusionTransformer(4, dim=16, heads=2), obj, torch.zeros(8, 5), cfg)


SCRIPT = """
import sys
from interpolant.text.train import train_text
overrides = {overrides!r}
train_text("markov-char", overrides, sys.argv[1])
"""


@pytest.mark.distributed
def test_two_gloo_ranks_equal_one_process(tmp_path):
    overrides = {**TINY, "steps": 3, "batch_size": 16, "batch_per_gpu": 4, "noise_block": 4}
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(SCRIPT.format(overrides=overrides)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run(
        [*cmd, str(script), str(tmp_path / "dist")],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    train_text("markov-char", overrides, tmp_path / "single")
    name = f"checkpoints/{checkpoint_name(3)}/model.safetensors"
    a, b = load_file(str(tmp_path / "dist" / name)), load_file(str(tmp_path / "single" / name))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)


def test_a_run_folder_of_another_network_is_refused(tmp_path):
    train_text("markov-char", {**TINY, "steps": 2}, tmp_path)
    with pytest.raises(ValueError, match="another model"):
        train_text("markov-char", {**TINY, "steps": 4, "model.dim": 64}, tmp_path)
    run = train_text("markov-char", {**TINY, "steps": 4}, tmp_path)  # same network: resumes
    assert run.step == 4
