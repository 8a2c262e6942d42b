"""The ``forward`` structure (observation-space diffusion, seed 20) from the command line's
api: a tiny ``forward-digits`` run trains (its loss falls), resumes bitwise, and ``api.sample``
returns signals whose rendered context matches the given one within the model's own error;
its options are checked like the other structures'."""

import json

import pytest
import torch

from interpolant import api
from interpolant.api.runs import as_run_config
from interpolant.errors import UserError
from interpolant.forward_models import ViewBatch, digit_views
from interpolant.train import checkpoint as ckpt

TINY = [
    "train.model.width=64", "train.batch_size=64", "train.progress=false", "train.device=cpu",
    "train.log_every=10", "data.n=512", "train.lr_schedule=constant",
]  # fmt: skip


def _train(run_dir, steps, *extra):
    overrides = [*TINY, f"train.run_dir={run_dir}", f"train.steps={steps}", *extra]
    return api.train("forward-digits", overrides, plots=False)


def _context_error(model, signals):
    """The model's mean squared context-render error per observed pixel on training tuples
    (context: the top half, target: the bottom half noised at t ~ U[0, 1])."""
    gen = torch.Generator().manual_seed(0)
    obs, request = model.observation, model.contexts(signals)
    target = obs.forward(signals.flatten(1), request.target_view)
    batch = ViewBatch(request.target_view, request.context, request.context_view, target=target)
    t = torch.rand(signals.shape[0], generator=gen)
    x_t = obs.path.sample_xt(target, t, torch.randn(target.shape, generator=gen))
    with torch.no_grad():
        rendered = obs.forward(obs.signal(model.net, x_t, t, batch), request.context_view)
    observed = float(digit_views()[0].mean())
    return float((rendered - request.context).square().mean()) / observed


def test_forward_digits_trains_resumes_and_samples_the_signal(tmp_path):
    _train(tmp_path / "a", 150, "train.checkpoint_every=50")
    losses = [json.loads(line)["loss"] for line in (tmp_path / "a" / "stats.jsonl").open()]
    assert sum(losses[-3:]) / 3 < 0.5 * sum(losses[:3]) / 3  # the loss falls
    # Resume: 2 + 2 steps equal 4 steps bit for bit.
    _train(tmp_path / "b", 4, "train.checkpoint_every=2")
    _train(tmp_path / "c", 2, "train.checkpoint_every=2")
    assert _train(tmp_path / "c", 4, "train.checkpoint_every=2").trainer.step == 4
    b = ckpt.read_tensors(tmp_path / "b" / "checkpoints" / "step-00000004", "model")
    c = ckpt.read_tensors(tmp_path / "c" / "checkpoints" / "step-00000004", "model")
    assert b.keys() == c.keys() and all(torch.equal(b[k], c[k]) for k in b)

    out = api.sample(tmp_path / "a", n=64, batch_size=24, nfe=20)
    assert out.x.shape == (64, 1, 8, 8) and out.labels is None
    assert out.meta["nfe_spent"] == 21  # DDIM's 20 and the final signal evaluation
    assert torch.equal(api.sample(tmp_path / "a", n=64, batch_size=64, nfe=20).x, out.x)
    run = api.load_run(tmp_path / "a")
    truth = api.load_data(run.config.data, "train").x[:64]  # sample i completes example i
    top = digit_views()[0].bool()
    error = (out.x.flatten(1) - truth.flatten(1))[:, top].square().mean()
    shuffled = (out.x.flatten(1) - truth.roll(1, 0).flatten(1))[:, top].square().mean()
    # The rendered context equals the given one within the model's own context error (+25%),
    # and is far closer to its own context than to another digit's.
    assert float(error) <= 1.25 * _context_error(run.model, truth)
    assert float(error) < 0.5 * float(shuffled)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.objective.context_view=1"], "must differ"),
        (["train.objective.target_view=8"], r"view index in \[0, 8\)"),
        (["train.objective.views=random"], "views"),
        (["train.objective.bogus=1"], "context_weight"),
        (["train.objective.weight=heavy"], "weight"),
    ],
)
def test_bad_options_are_refused_when_the_config_is_read(overrides, message):
    with pytest.raises(UserError, match=message):
        as_run_config("forward-digits", overrides)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.labels=true"], r"data\.labels=false"),
        (["train.model.name=mlp"], "masked-view"),
        (["train.model.heads=2"], "no option"),
        (["data.name=moons"], "8x8 digits"),
    ],
)
def test_data_and_network_that_do_not_fit_are_refused(tmp_path, overrides, message):
    with pytest.raises(UserError, match=message):
        _train(tmp_path / "x", 1, *overrides)
