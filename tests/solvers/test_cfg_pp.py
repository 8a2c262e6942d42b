"""CFG++ samplers (ComfyUI ``euler_cfg_pp``, ``euler_ancestral_cfg_pp``, ``dpmpp_2m_cfg_pp``) on
the library's CFG: step for step against direct transcriptions of ComfyUI's updates on an exact
class-conditional Gaussian mixture (with the same normals), two counted evaluations per step,
batched CFG, the same samples on every path, the unguided limits (Euler / DDIM and
DPM-Solver++(2M)), the exact equivalence of Euler CFG++ with DDIM under CFG at the step-dependent
scale lambda / (1 - s' / s), and the error without a CFG hook."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant import paths
from interpolant.errors import UserError
from interpolant.guidance import CFG, CFGRescale, two_class_mixture
from interpolant.predictions import GuidedPrediction, Prediction
from interpolant.randomness import Streams
from interpolant.solvers import FunctionHook, node_at, sample

EDM = paths.EDM(sigma_max=80.0)
FLOW = paths.Linear()
SEED = 3
LM = two_class_mixture(dim=2, separation=1.5, std=0.6, n_per_class=2)


def _noise(n: int = 6) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)


def _labels(n: int = 6) -> torch.Tensor:
    return torch.arange(n) % 2


def _setting(ms: str, steps: int):
    """(our path, their sigmas ending at 0, our grid, their (cond, uncond) denoisers)."""
    if ms == "edm":
        sigmas = torch.exp(torch.linspace(math.log(60.0), math.log(0.02), steps)).double()
        path, grid = EDM, sigmas / 80.0
    else:
        sigmas = torch.linspace(0.97, 0.03, steps).double()
        path, grid = FLOW, sigmas
    sigmas = torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)])
    grid = torch.cat([grid, torch.zeros(1, dtype=torch.float64)])

    def denoisers(x, sigma, labels):
        t = torch.full((x.shape[0],), float(sigma) / 80.0 if ms == "edm" else float(sigma),
                       dtype=torch.float64)  # fmt: skip
        return LM.denoiser(x, t, path, labels), LM.denoiser(x, t, path, None)

    return path, sigmas, grid, denoisers


def _ancestral(s_from: float, s_to: float, eta: float) -> tuple[float, float]:
    """k-diffusion's ``get_ancestral_step``."""
    if not eta:
        return s_to, 0.0
    up = min(s_to, eta * (s_to**2 * (s_from**2 - s_to**2) / s_from**2) ** 0.5)
    return (s_to**2 - up**2) ** 0.5, up


def _comfy_euler_cfg_pp(denoisers, x, sigmas, ms, w, labels, draw, eta=0.0):
    """ComfyUI's ``sample_euler_ancestral_cfg_pp`` (eta = 0: ``sample_euler_cfg_pp``)."""
    for i in range(len(sigmas) - 1):
        cond, uncond = denoisers(x, sigmas[i], labels)
        den = uncond + w * (cond - uncond)
        if sigmas[i + 1] == 0:
            x = den
            continue
        lam = [float(sigmas[j].logit().neg() if ms == "const" else sigmas[j].log().neg())
               for j in (i, i + 1)]  # fmt: skip
        alpha_s = float(sigmas[i]) * math.exp(lam[0])
        alpha_t = float(sigmas[i + 1]) * math.exp(lam[1])
        d = (x - alpha_s * uncond) / sigmas[i]
        down, up = _ancestral(float(sigmas[i]) / alpha_s, float(sigmas[i + 1]) / alpha_t, eta)
        x = alpha_t * den + alpha_t * down * d
        if eta > 0:
            x = x + alpha_t * draw(x) * up
    return x


def _comfy_dpmpp_2m_cfg_pp(denoisers, x, sigmas, w, labels):
    """ComfyUI's ``sample_dpmpp_2m_cfg_pp`` (sigma coordinates: alpha = 1)."""
    old_uncond = None
    for i in range(len(sigmas) - 1):
        cond, uncond = denoisers(x, sigmas[i], labels)
        den = uncond + w * (cond - uncond)
        t, t_next = sigmas[i].log().neg(), sigmas[i + 1].log().neg()
        h = t_next - t
        if old_uncond is None or sigmas[i + 1] == 0:
            mix = -torch.exp(-h) * uncond
        else:
            r = (t - sigmas[i - 1].log().neg()) / h
            mix = -torch.exp(-h) * uncond - torch.expm1(-h) * (1 / (2 * r)) * (den - old_uncond)
        x = den + mix + torch.exp(-h) * x
        old_uncond = uncond
    return x


def _ours(path, noise, solver, grid, hooks, labels=None):
    labels = _labels(noise.shape[0]) if labels is None else labels
    steps = None if isinstance(grid, torch.Tensor) else 8  # a named grid takes 8 steps
    return sample(LM.model(path), noise, solver=solver, grid=grid, steps=steps, hooks=hooks,
                  seed=SEED, cond={"class_labels": labels})  # fmt: skip


@pytest.mark.parametrize("ms", ["edm", "const"])
@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("w", [0.6, 2.0])
def test_euler_cfg_pp_matches_comfyui(ms, eta, w):
    path, sigmas, grid, denoisers = _setting(ms, 8)
    noise = _noise()
    streams = Streams(SEED, noise.shape[0])
    theirs = _comfy_euler_cfg_pp(denoisers, noise * float(sigmas[0]), sigmas, ms, w, _labels(),
                                 streams.normal_like, eta)  # fmt: skip
    ours = _ours(path, noise, {"name": "euler_cfg_pp", "eta": eta}, grid, [CFG(w)])
    torch.testing.assert_close(ours.x, theirs, rtol=1e-10, atol=1e-10)
    assert ours.nfe == 2 * 8  # the conditional and the unconditional evaluation of every step


@pytest.mark.parametrize("w", [0.6, 2.0])
def test_dpmpp_2m_cfg_pp_matches_comfyui(w):
    path, sigmas, grid, denoisers = _setting("edm", 8)
    noise = _noise()
    theirs = _comfy_dpmpp_2m_cfg_pp(denoisers, noise * float(sigmas[0]), sigmas, w, _labels())
    ours = _ours(path, noise, "dpmpp_2m_cfg_pp", grid, [CFG(w)])
    torch.testing.assert_close(ours.x, theirs, rtol=1e-10, atol=1e-10)
    assert ours.nfe == 16
    # Batched CFG (both halves in one network call, counted as two) gives the same samples.
    batched = _ours(path, noise, "dpmpp_2m_cfg_pp", grid,
                    [CFG(w, null_cond={"class_labels": 2}, batched=True)])  # fmt: skip
    torch.testing.assert_close(batched.x, ours.x, rtol=1e-12, atol=1e-12)
    assert batched.nfe == 16


@pytest.mark.parametrize("solver", ["euler_cfg_pp", "dpmpp_2m_cfg_pp"])
def test_same_samples_on_every_path(solver):
    grid = {"name": "karras", "sigma_max": 50.0}
    on_edm = _ours(EDM, _noise(), solver, grid, [CFG(1.5)])
    on_vp = _ours(paths.VP(), _noise(), solver, grid, [CFG(1.5)])
    torch.testing.assert_close(on_vp.x, on_edm.x, rtol=1e-8, atol=1e-8)


def test_unguided_limits():
    # At weight 1 CFG does not evaluate the reference: Euler CFG++ is DDIM (Euler in EDM
    # coordinates) and the 2M variant DPM-Solver++(2M).
    grid = {"name": "karras", "sigma_max": 50.0}
    for ours, plain in (("euler_cfg_pp", "ddim"), ("dpmpp_2m_cfg_pp", "dpmpp_2m")):
        a = _ours(paths.VP(), _noise(), ours, grid, [CFG(1.0)])
        b = _ours(paths.VP(), _noise(), plain, grid, [])
        torch.testing.assert_close(a.x, b.x, rtol=1e-12, atol=1e-12)
        assert a.nfe == b.nfe


def test_euler_cfg_pp_is_ddim_with_cfg_at_a_step_dependent_scale():
    # x_edm' = D_lam + s' eps_u = (s'/s) x_edm + (1 - s'/s) D_omega with
    # omega = lam / (1 - s'/s): CFG++ is CFG at a scale that grows as the steps shrink, so it
    # has no convergence order in the number of steps.
    lam = 0.7
    grid = torch.exp(torch.linspace(math.log(0.75), math.log(0.001), 12)).double()
    grid = torch.cat([grid, torch.zeros(1, dtype=torch.float64)])
    s = grid * 80.0  # the EDM path's sigma (alpha = 1)
    omega = {float(t): lam / (1.0 - float(s[i + 1] / s[i])) for i, t in enumerate(grid[:-1])}
    ours = _ours(EDM, _noise(), "euler_cfg_pp", grid, [CFG(lam)])
    ddim = _ours(EDM, _noise(), "ddim", grid, [CFG(1.0, schedule=lambda t: omega[t])])
    torch.testing.assert_close(ours.x, ddim.x, rtol=1e-9, atol=1e-9)
    # On this grid s'/s = (0.001 / 0.75)^(1/11) = 0.548, so every step but the final one (to
    # s' = 0, where omega = lam) runs CFG at 2.2 lam.
    ratio = (0.001 / 0.75) ** (1 / 11)
    assert sorted(omega.values())[1:] == pytest.approx([lam / (1 - ratio)] * 11, rel=1e-5)


def test_every_reference_guidance_hands_its_reference_over():
    # CFG rescale is a reference guidance too: the prediction the solver sees carries the
    # unconditional one; a later hook that changes the prediction drops it (a plain Prediction).
    seen = []

    def look(pred, node, run):
        seen.append(isinstance(pred, GuidedPrediction))
        return pred

    _ours(EDM, _noise(), "euler_cfg_pp", {"name": "karras", "sigma_max": 50.0},
          [CFGRescale(2.0), FunctionHook(on_prediction=look)])  # fmt: skip
    assert seen and all(seen)
    x = torch.zeros(1, 2, dtype=torch.float64)
    plain = Prediction(x, 0.5, "x0", x, node_at(EDM, 0.5).coeffs)
    guided = GuidedPrediction.of(plain, plain)
    assert guided.reference is plain and type(guided.replace("x0", x + 1.0)) is Prediction


def test_needs_a_cfg_hook():
    with pytest.raises(UserError, match=r"guidance\.CFG"):
        _ours(EDM, _noise(), "dpmpp_2m_cfg_pp", {"name": "karras", "sigma_max": 50.0}, [])
    # Guidance that starts below t_max (interval) is fine: the first steps are unguided.
    out = _ours(EDM, _noise(), "euler_cfg_pp", {"name": "karras", "sigma_max": 50.0},
                [CFG(0.8, interval=(0.0, 0.1))])  # fmt: skip
    assert bool(torch.isfinite(out.x).all())


def test_ancestral_noise_is_per_sample():
    grid = {"name": "karras", "sigma_max": 50.0}
    solver = {"name": "euler_cfg_pp", "eta": 1.0}
    noise, labels = _noise(8), _labels(8)
    full = _ours(EDM, noise, solver, grid, [CFG(0.8)], labels).x
    part = sample(LM.model(EDM), noise[2:5], solver=solver, grid=grid, steps=8, seed=SEED,
                  hooks=[CFG(0.8)], cond={"class_labels": labels[2:5]},
                  index=[2, 3, 4])  # fmt: skip
    torch.testing.assert_close(part.x, full[2:5], rtol=1e-12, atol=1e-12)
