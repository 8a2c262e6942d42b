"""CFG and autoguidance: exact endpoints (w = 1 is the model, w = 0 the reference), kind
independence, schedules and intervals at the nodes, NFE accounting, batching."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant import paths, sample
from interpolant.guidance import CFG, AutoGuidance, GuidanceScale, ReferenceGuidance
from interpolant.predictions import Model, convert

PATHS = {"vp": paths.VP, "edm": paths.EDM, "linear": paths.Linear}
SOLVERS = ("euler", "dpmpp_2m", "heun")


def eps_model(mixture, path) -> Model:
    """The exact conditional model re-expressed as an eps predictor."""
    x0_net = mixture.model(path).net

    def net(x, t, class_labels=None):
        return convert(x0_net(x, t, class_labels), "x0", "eps", x, t, path)

    return Model(net, path, predicts="eps")


@pytest.mark.parametrize("path_name", sorted(PATHS))
@pytest.mark.parametrize("solver", SOLVERS)
def test_cfg_endpoints_are_exact(mixture, noise, labels, path_name, solver):
    path = PATHS[path_name]()
    model = mixture.model(path)
    kw = {"solver": solver, "nfe": 10, "t_max": 0.999}
    cond = {"class_labels": labels}
    conditional = sample(model, noise, cond=cond, **kw)
    unconditional = sample(model, noise, **kw)
    assert torch.equal(sample(model, noise, cond=cond, hooks=[CFG(1.0)], **kw), conditional)
    assert torch.equal(sample(model, noise, cond=cond, hooks=[CFG(0.0)], **kw), unconditional)
    guided = sample(model, noise, cond=cond, hooks=[CFG(3.0)], **kw)
    assert not torch.allclose(guided, conditional)


@pytest.mark.parametrize("path_name", sorted(PATHS))
def test_lerp_is_the_same_in_every_prediction_kind(mixture, noise, labels, path_name):
    path = PATHS[path_name]()
    kw = {"solver": "dpmpp_2m", "nfe": 8, "t_max": 0.99, "cond": {"class_labels": labels}}
    a = sample(mixture.model(path), noise, hooks=[CFG(2.5)], **kw)
    b = sample(eps_model(mixture, path), noise, hooks=[CFG(2.5)], **kw)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_cfg_matches_the_closed_form_score_extrapolation(mixture, noise, labels):
    # For x0 predictions the lerp is also the lerp of scores: s_w = s_u + w (s_c - s_u).
    path = paths.VP()
    model = mixture.model(path)
    t, w = 0.4, 2.5
    x = noise * 0.8
    seen = []

    def record(pred, node, ctx):
        seen.append(pred.score)
        return pred

    sample(
        model,
        x,
        grid=[t, 0.0],
        scale_noise=False,
        cond={"class_labels": labels},
        hooks=[CFG(w), record],
    )
    s_c = torch.stack(
        [mixture.conditionals[int(c)].score(x[i : i + 1], t, path)[0] for i, c in enumerate(labels)]
    )
    s_u = mixture.mixture.score(x, t, path)
    torch.testing.assert_close(seen[0], s_u + w * (s_c - s_u), rtol=0, atol=1e-10)


def test_schedule_and_interval_at_the_nodes(mixture, noise, labels):
    path = paths.VP()
    model = mixture.model(path)
    grid = torch.linspace(1.0, 0.0, 11, dtype=torch.float64)
    scale = GuidanceScale(4.0, "linear", interval=(0.2, 0.75), off=1.0)
    hook = ReferenceGuidance(scale, null_cond={"class_labels": None})
    res = sample(
        model,
        noise,
        grid=grid,
        solver="euler",
        cond={"class_labels": labels},
        hooks=[hook],
        return_result=True,
    )
    inside = [t for t in grid[:-1].tolist() if 0.2 <= t <= 0.75]
    # One reference call per node inside the interval, none outside (w = 1 there).
    assert res.nfe == 10 + len(inside)
    for t in grid.tolist():
        expect = 1.0 + 3.0 * 2.0 * (1.0 - t) if 0.2 <= t <= 0.75 else 1.0
        assert scale(t) == pytest.approx(expect, abs=1e-12)


@pytest.mark.parametrize("name", ["linear", "cosine", "constant"])
def test_named_schedules_keep_the_mean_excess(name):
    scale = GuidanceScale(3.0, name, off=1.0)
    t = torch.linspace(0, 1, 20001, dtype=torch.float64)
    w = torch.tensor([scale(float(s)) for s in t])
    assert float(torch.trapezoid(w, t)) == pytest.approx(3.0, abs=1e-6)
    callable_scale = GuidanceScale(3.0, lambda s: 1.0 + math.sin(s), interval=(0.1, 0.9), off=1.0)
    assert callable_scale(0.5) == pytest.approx(1.0 + math.sin(0.5))
    assert callable_scale(0.95) == 1.0


def test_batched_forward_equals_two_calls(mixture, noise, labels):
    path = paths.EDM()
    model = mixture.model(path)
    kw = {"solver": "heun", "nfe": 11, "cond": {"class_labels": labels}, "return_result": True}
    two = sample(model, noise, hooks=[CFG(2.0, interval=(0.0, 0.5))], **kw)
    hook = CFG(2.0, null_cond={"class_labels": mixture.n_classes}, interval=(0.0, 0.5))
    calls = []
    inner = model.net

    def counting(x, t, class_labels=None):
        calls.append(x.shape[0])
        return inner(x, t, class_labels)

    one = sample(hook.batched(Model(counting, path, "x0")), noise, hooks=[hook], **kw)
    torch.testing.assert_close(one.x, two.x, rtol=0, atol=1e-12)
    assert one.nfe == two.nfe
    assert len(calls) == 11 and max(calls) == 2 * noise.shape[0]  # one forward per evaluation


def test_batch_invariance(mixture, noise, labels):
    model = mixture.model(paths.VP())
    kw = {"solver": "dpmpp_2m", "nfe": 8, "hooks": [CFG(3.0, interval=(0.1, 0.9))]}
    full = sample(model, noise, cond={"class_labels": labels}, **kw)
    part = sample(model, noise[:2], cond={"class_labels": labels[:2]}, **kw)
    torch.testing.assert_close(part, full[:2], rtol=0, atol=1e-12)


def test_autoguidance_with_the_model_as_reference_is_the_identity(mixture, noise, labels):
    path = paths.Linear()
    model = mixture.model(path)
    kw = {"solver": "euler", "nfe": 6, "t_max": 0.99, "cond": {"class_labels": labels}}
    base = sample(model, noise, **kw)
    guided = sample(model, noise, hooks=[AutoGuidance(mixture.model(path), 5.0)], **kw)
    torch.testing.assert_close(guided, base, rtol=0, atol=1e-12)


def test_autoguidance_extrapolates_away_from_a_weaker_model(mixture, noise, labels):
    # Reference: the unconditional exact model, so autoguidance equals CFG.
    path = paths.VP()
    model = mixture.model(path)
    weak = Model(lambda x, t, class_labels=None: model.net(x, t), path, "x0")
    kw = {"solver": "euler", "nfe": 6, "cond": {"class_labels": labels}}
    a = sample(model, noise, hooks=[AutoGuidance(weak, 2.0)], **kw)
    b = sample(model, noise, hooks=[CFG(2.0)], **kw)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_errors_name_the_argument(mixture, noise):
    model = mixture.model(paths.VP())
    with pytest.raises(ValueError, match="reference is on path"):
        sample(model, noise, nfe=4, hooks=[AutoGuidance(mixture.model(paths.EDM()), 2.0)])
    with pytest.raises(ValueError, match="null_cond"):
        ReferenceGuidance(2.0)
    with pytest.raises(ValueError, match="interval"):
        CFG(2.0, interval=(0.8, 0.2))
    with pytest.raises(ValueError, match="schedule"):
        CFG(2.0, schedule="quadratic")
    with pytest.raises(ValueError, match="explicit null labels"):
        CFG(2.0).batched(model)
    with pytest.raises(TypeError, match="reference"):
        AutoGuidance(lambda x, t: x, 2.0)  # type: ignore[arg-type]
