"""CFG rescale, APG and CFG-Zero*: each guided prediction against its formula, computed from the
exact conditional and unconditional predictions of a two-class Gaussian mixture; their limits
(plain CFG, the conditional model); and two evaluations per step."""

from __future__ import annotations

import pytest
import torch

from interpolant import paths, sample
from interpolant.errors import UserError
from interpolant.guidance import APG, CFG, CFGRescale, CFGZeroStar
from interpolant.predictions import convert
from interpolant.solvers import FunctionHook


def _guided(mixture, hook, noise, labels, grid, path=None, solver="euler"):
    """The run and the guided predictions it saw (recorded after the guidance hook)."""
    path = path or paths.VP()
    seen = []
    record = FunctionHook(on_prediction=lambda pred, node, run: seen.append(pred) or pred)
    result = sample(
        mixture.model(path),
        noise,
        grid=grid,
        solver=solver,
        scale_noise=False,
        cond={"class_labels": labels},
        hooks=[hook, record],
    )
    return result, seen


def _exact(mixture, path, x, t, labels, kind):
    """(conditional, unconditional) exact predictions of ``kind`` at (x, t)."""
    net = mixture.model(path).net
    tt = torch.full((x.shape[0],), t, dtype=torch.float64)
    cond, uncond = net(x, tt, labels), net(x, tt, None)
    return tuple(convert(v, "x0", kind, x, tt, path) for v in (cond, uncond))


def _per_sample(fn, v):
    return fn(v.reshape(v.shape[0], -1)).reshape(-1, *([1] * (v.ndim - 1)))


@pytest.mark.parametrize("kind", [None, "eps", "v"])
def test_cfg_rescale_is_its_formula(mixture, noise, labels, kind):
    path, t, w, phi = paths.VP(), 0.45, 4.0, 0.7
    x = noise * 0.9
    result, seen = _guided(mixture, CFGRescale(w, phi, kind=kind), x, labels, [t, 0.0], path)
    k = kind or "x0"
    d, r = _exact(mixture, path, x, t, labels, k)
    g = r + w * (d - r)
    factor = _per_sample(lambda m: m.std(dim=1), d) / _per_sample(lambda m: m.std(dim=1), g)
    expected = phi * g * factor + (1 - phi) * g
    torch.testing.assert_close(seen[0].get(k), expected, rtol=1e-10, atol=1e-12)
    assert result.nfe == 2
    # phi = 1: the guided prediction has exactly the conditional one's per-sample std.
    _, seen1 = _guided(mixture, CFGRescale(w, 1.0, kind=kind), x, labels, [t, 0.0], path)
    torch.testing.assert_close(seen1[0].get(k).std(dim=1), d.std(dim=1), rtol=1e-10, atol=0)


def test_cfg_rescale_with_phi_zero_is_cfg(mixture, noise, labels):
    kw = {"grid": [0.9, 0.5, 0.2, 0.0], "solver": "dpmpp_2m"}
    plain, _ = _guided(mixture, CFG(3.0), noise, labels, **kw)
    rescaled, _ = _guided(mixture, CFGRescale(3.0, 0.0), noise, labels, **kw)
    torch.testing.assert_close(rescaled.x, plain.x, rtol=0, atol=1e-12)


def test_apg_is_its_formula_with_threshold_and_momentum(mixture, noise, labels):
    path, w, eta, beta, r = paths.VP(), 5.0, 0.3, -0.5, 0.4
    hook = APG(w, eta=eta, momentum=beta, norm_threshold=r)
    result, seen = _guided(mixture, hook, noise, labels, [0.6, 0.35, 0.0], path)
    assert result.nfe == 4  # two steps, two evaluations each
    average = None
    for pred, t in zip(seen, (0.6, 0.35)):
        d, u = _exact(mixture, path, pred.x, t, labels, "x0")
        delta = d - u
        if average is not None:
            delta = delta + beta * average
        average = delta
        norm = delta.norm(dim=1, keepdim=True)
        delta = delta * torch.clamp(r / norm, max=1.0)
        par = (delta * d).sum(1, keepdim=True) / (d * d).sum(1, keepdim=True) * d
        expected = d + (w - 1) * ((delta - par) + eta * par)
        torch.testing.assert_close(pred.x0, expected, rtol=1e-10, atol=1e-12)


def test_apg_limits(mixture, noise, labels):
    kw = {"grid": [0.9, 0.5, 0.2, 0.0], "solver": "dpmpp_2m"}
    plain, _ = _guided(mixture, CFG(3.0), noise, labels, **kw)
    apg_cfg, _ = _guided(mixture, APG(3.0, eta=1.0), noise, labels, **kw)
    torch.testing.assert_close(apg_cfg.x, plain.x, rtol=0, atol=1e-12)
    # eta = 0: the update is orthogonal to the conditional prediction.
    path, x, t = paths.VP(), noise * 0.8, 0.5
    _, seen = _guided(mixture, APG(3.0, eta=0.0), x, labels, [t, 0.0], path)
    d, _ = _exact(mixture, path, x, t, labels, "x0")
    assert float(((seen[0].x0 - d) * d).sum(1).abs().max()) < 1e-12


def test_cfg_zero_star_is_its_formula_and_zero_inits(mixture, noise, labels):
    path, w = paths.Linear(), 3.5
    hook = CFGZeroStar(w, zero_init_steps=1)
    x = noise * 0.95
    result, seen = _guided(mixture, hook, x, labels, [0.95, 0.6, 0.3, 0.0], path)
    assert result.nfe == 6
    assert torch.equal(seen[0].velocity, torch.zeros_like(x))
    torch.testing.assert_close(seen[1].x, x, rtol=0, atol=0)  # the zeroed step did not move
    for pred, t in zip(seen[1:], (0.6, 0.3)):
        vc, vu = _exact(mixture, path, pred.x, t, labels, "velocity")
        s = (vc * vu).sum(1, keepdim=True) / (vu * vu).sum(1, keepdim=True)
        torch.testing.assert_close(pred.velocity, s * vu + w * (vc - s * vu), rtol=1e-10,
                                   atol=1e-12)  # fmt: skip


def test_cfg_zero_star_without_zero_init_at_unit_weight_is_the_conditional_model(
    mixture, noise, labels
):
    kw = {"grid": [0.9, 0.5, 0.2, 0.0], "solver": "euler", "path": paths.Linear()}
    conditional, _ = _guided(mixture, CFG(1.0), noise, labels, **kw)
    zero_star, _ = _guided(mixture, CFGZeroStar(1.0, zero_init_steps=0), noise, labels, **kw)
    torch.testing.assert_close(zero_star.x, conditional.x, rtol=0, atol=1e-12)


def test_bad_options_say_what_is_wrong():
    with pytest.raises(UserError, match="phi"):
        CFGRescale(3.0, 1.5)
    with pytest.raises(UserError, match="norm_threshold"):
        APG(3.0, norm_threshold=-1.0)
    with pytest.raises(UserError, match="zero_init_steps"):
        CFGZeroStar(3.0, zero_init_steps=-1)
    with pytest.raises(UserError, match="kind"):
        CFGRescale(3.0, kind="noise")


def test_spec_strings_build_the_variants(mixture, noise, labels):
    from interpolant.guidance import from_spec, needs_null_label

    hooks = from_spec("cfg_rescale:4,apg:5@0.1-0.9,cfg_zero_star:3")
    assert [type(h) for h in hooks] == [CFGRescale, APG, CFGZeroStar]
    assert hooks[0].phi == 0.7 and hooks[1].weight(0.05) == 1.0 and hooks[1].weight(0.5) == 5.0
    assert needs_null_label("apg:5")
    # The spec's APG is the hook's: the same samples.
    kw = {"grid": [0.9, 0.5, 0.2, 0.0], "solver": "dpmpp_2m"}
    a, _ = _guided(mixture, from_spec("apg:5")[0], noise, labels, **kw)
    b, _ = _guided(mixture, APG(5.0), noise, labels, **kw)
    torch.testing.assert_close(a.x, b.x, rtol=0, atol=0)
