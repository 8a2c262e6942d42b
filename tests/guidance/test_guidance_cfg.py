"""CFG and autoguidance: exact endpoints (w = 1 is the model, w = 0 the reference), kind
independence, schedules and intervals at the nodes, NFE accounting, batching."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant import paths, sample
from interpolant.guidance import (
    CFG,
    AutoGuidance,
    GuidanceScale,
    ObservationGuidance,
    ReferenceGuidance,
)
from interpolant.predictions import Model, convert
from interpolant.solvers import FunctionHook

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
    conditional = sample(model, noise, cond=cond, **kw).x
    unconditional = sample(model, noise, **kw).x
    assert torch.equal(sample(model, noise, cond=cond, hooks=[CFG(1.0)], **kw).x, conditional)
    assert torch.equal(sample(model, noise, cond=cond, hooks=[CFG(0.0)], **kw).x, unconditional)
    guided = sample(model, noise, cond=cond, hooks=[CFG(3.0)], **kw).x
    assert not torch.allclose(guided, conditional)


@pytest.mark.parametrize("path_name", sorted(PATHS))
def test_lerp_is_the_same_in_every_prediction_kind(mixture, noise, labels, path_name):
    path = PATHS[path_name]()
    kw = {"solver": "dpmpp_2m", "nfe": 8, "t_max": 0.99, "cond": {"class_labels": labels}}
    a = sample(mixture.model(path), noise, hooks=[CFG(2.5)], **kw).x
    b = sample(eps_model(mixture, path), noise, hooks=[CFG(2.5)], **kw).x
    torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_cfg_matches_the_closed_form_score_extrapolation(mixture, noise, labels):
    # For x0 predictions the lerp is also the lerp of scores: s_w = s_u + w (s_c - s_u).
    path = paths.VP()
    model = mixture.model(path)
    t, w = 0.4, 2.5
    x = noise * 0.8
    seen = []

    def record(pred, node, run):
        seen.append(pred.score)
        return pred

    sample(
        model,
        x,
        grid=[t, 0.0],
        scale_noise=False,
        cond={"class_labels": labels},
        hooks=[CFG(w), FunctionHook(on_prediction=record)],
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


def counting_model(model: Model, calls: list[int]) -> Model:
    """``model`` whose network records the batch size of every call."""
    inner = model.net

    def counting(x, t, class_labels=None):
        calls.append(x.shape[0])
        return inner(x, t, class_labels)

    return Model(counting, model.path, model.predicts)


def test_batched_forward_equals_two_calls(mixture, noise, labels):
    path = paths.EDM()
    model = mixture.model(path)
    kw = {"solver": "heun", "nfe": 11, "cond": {"class_labels": labels}}
    two = sample(model, noise, hooks=[CFG(2.0, interval=(0.0, 0.5))], **kw)
    null = {"class_labels": mixture.n_classes}
    hook = CFG(2.0, null_cond=null, interval=(0.0, 0.5), batched=True)
    calls: list[int] = []
    one = sample(counting_model(model, calls), noise, hooks=[hook], **kw)
    torch.testing.assert_close(one.x, two.x, rtol=0, atol=1e-12)
    assert one.nfe == two.nfe
    assert len(calls) == 11 and max(calls) == 2 * noise.shape[0]  # one forward per evaluation
    # The NFE is the network's work: a doubled batch counts two evaluations per sample.
    assert one.nfe == sum(calls) // noise.shape[0]
    assert vars(hook).keys() == {"weight", "reference", "null_cond", "batched"}  # no run state


def test_batched_hook_after_a_changing_hook_still_equals_two_calls(mixture, noise, labels):
    # A prediction hook before CFG changes the model's output: the batched null half no longer
    # belongs to it, so CFG evaluates the reference itself, exactly as the unbatched hook does.
    path = paths.VP()
    model = mixture.model(path)
    shift = FunctionHook(on_prediction=lambda p, n, r: p.replace("x0", p.x0 + 0.1))
    kw = {"solver": "euler", "nfe": 5, "cond": {"class_labels": labels}}
    null = {"class_labels": mixture.n_classes}
    plain = sample(model, noise, hooks=[shift, CFG(2.0, null_cond=null)], **kw)
    calls: list[int] = []
    hook = CFG(2.0, null_cond=null, batched=True)
    batched = sample(counting_model(model, calls), noise, hooks=[shift, hook], **kw)
    torch.testing.assert_close(batched.x, plain.x, rtol=0, atol=1e-12)
    assert batched.nfe == sum(calls) // noise.shape[0] == 15  # 5 paired calls + 5 references


@pytest.mark.parametrize("batched", [False, True])
def test_reported_nfe_equals_the_network_calls(mixture, noise, labels, batched):
    path = paths.VP()
    calls: list[int] = []
    model = counting_model(mixture.model(path), calls)
    hook = CFG(3.0, null_cond={"class_labels": 2}, interval=(0.3, 1.0), batched=batched)
    res = sample(model, noise, solver="heun", nfe=9, cond={"class_labels": labels}, hooks=[hook])
    assert res.nfe == sum(calls) // noise.shape[0] > 9
    ref_calls: list[int] = []
    weak = counting_model(mixture.model(path), ref_calls)
    calls.clear()
    auto = sample(model, noise, nfe=6, cond={"class_labels": labels}, hooks=[AutoGuidance(weak, 2)])
    assert auto.nfe == len(calls) + len(ref_calls) == 12


def test_batch_invariance(mixture, noise, labels):
    model = mixture.model(paths.VP())
    kw = {"solver": "dpmpp_2m", "nfe": 8, "hooks": [CFG(3.0, interval=(0.1, 0.9))]}
    full = sample(model, noise, cond={"class_labels": labels}, **kw).x
    part = sample(model, noise[:2], cond={"class_labels": labels[:2]}, **kw).x
    torch.testing.assert_close(part, full[:2], rtol=0, atol=1e-12)


def test_autoguidance_with_the_model_as_reference_is_the_identity(mixture, noise, labels):
    path = paths.Linear()
    model = mixture.model(path)
    kw = {"solver": "euler", "nfe": 6, "t_max": 0.99, "cond": {"class_labels": labels}}
    base = sample(model, noise, **kw).x
    guided = sample(model, noise, hooks=[AutoGuidance(mixture.model(path), 5.0)], **kw).x
    torch.testing.assert_close(guided, base, rtol=0, atol=1e-12)


def test_autoguidance_extrapolates_away_from_a_weaker_model(mixture, noise, labels):
    # Reference: the unconditional exact model, so autoguidance equals CFG.
    path = paths.VP()
    model = mixture.model(path)
    weak = Model(lambda x, t, class_labels=None: model.net(x, t), path, "x0")
    kw = {"solver": "euler", "nfe": 6, "cond": {"class_labels": labels}}
    a = sample(model, noise, hooks=[AutoGuidance(weak, 2.0)], **kw).x
    b = sample(model, noise, hooks=[CFG(2.0)], **kw).x
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
        CFG(2.0, batched=True)
    with pytest.raises(ValueError, match="autoguidance"):
        ReferenceGuidance(2.0, model, batched=True)
    with pytest.raises(TypeError, match="reference"):
        AutoGuidance(lambda x, t: x, 2.0)  # type: ignore[arg-type]


def test_batched_cfg_with_energy_guidance_equals_two_calls(mixture, noise, labels):
    # Energy guidance re-evaluates the model with the run's conditioning: one plain evaluation
    # (the conditional model's x0_hat) whether or not CFG pairs the loop's evaluations.
    path = paths.VP()
    model = mixture.model(path)
    energy = ObservationGuidance(torch.zeros_like(noise), torch.tensor([1.0, 0.0]), 0.5)
    null = {"class_labels": mixture.n_classes}
    kw = {"solver": "dpmpp_2m", "nfe": 6, "cond": {"class_labels": labels}}
    plain = sample(model, noise, hooks=[CFG(2.0, null_cond=null), energy], **kw)
    calls: list[int] = []
    hooks = [CFG(2.0, null_cond=null, batched=True), energy]
    batched = sample(counting_model(model, calls), noise, hooks=hooks, **kw)
    torch.testing.assert_close(batched.x, plain.x, rtol=0, atol=1e-12)
    assert batched.nfe == plain.nfe == sum(calls) // noise.shape[0] == 18
    assert len(calls) == 12  # 6 paired calls and 6 plain re-evaluations
