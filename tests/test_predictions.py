"""Prediction algebra: all conversions on all paths, override, Model, Preconditioned."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant import paths
from interpolant.paths import PATHS, GaussianPath
from interpolant.predictions import (
    KINDS,
    Coefficients,
    Model,
    Preconditioned,
    Prediction,
    convert,
    edm_loss_weight,
)

F64 = torch.float64
ALL_PATHS = [cls() for cls in dict.fromkeys(PATHS.values())]
IDS = [repr(p) for p in ALL_PATHS]


def truth(path: GaussianPath, t: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor):
    """x_t and every kind from the definitions (t of shape (B,))."""
    a, s, da, ds = (c.reshape(-1, 1) for c in path.coefficients(t))
    return a * x0 + s * eps, {
        "x0": x0,
        "eps": eps,
        "velocity": da * x0 + ds * eps,
        "score": -eps / s,
        "v": a * eps - s * x0,
    }


@pytest.mark.parametrize("path", ALL_PATHS, ids=IDS)
def test_all_conversions_per_sample_time(path: GaussianPath) -> None:
    g = torch.Generator().manual_seed(1)
    t = 0.02 + 0.96 * torch.rand(16, generator=g, dtype=F64)
    x0, eps = torch.randn(16, 5, generator=g, dtype=F64), torch.randn(16, 5, generator=g, dtype=F64)
    x, values = truth(path, t, x0, eps)
    for src in KINDS:
        for dst in KINDS:
            out = convert(values[src], src, dst, x, t, path)
            torch.testing.assert_close(out, values[dst], rtol=1e-9, atol=1e-9, msg=f"{src}->{dst}")
            back = convert(out, dst, src, x, t, path)
            torch.testing.assert_close(back, values[src], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("path", ALL_PATHS, ids=IDS)
def test_prediction_reads_every_kind_at_scalar_time(path: GaussianPath) -> None:
    g = torch.Generator().manual_seed(2)
    t = float(0.02 + 0.96 * torch.rand(1, generator=g, dtype=F64))
    x0, eps = (
        torch.randn(3, 2, 4, generator=g, dtype=F64),
        torch.randn(3, 2, 4, generator=g, dtype=F64),
    )
    tt = torch.full((3,), t, dtype=F64)
    x, values = truth(path, tt, x0.flatten(1), eps.flatten(1))
    x = x.reshape(x0.shape)
    coeffs = Coefficients.at(path, t, x)
    assert isinstance(coeffs.alpha, float)
    for src in KINDS:
        pred = Prediction(x, t, src, values[src].reshape(x0.shape), coeffs)
        for dst in KINDS:
            torch.testing.assert_close(
                pred.get(dst), values[dst].reshape(x0.shape), rtol=1e-9, atol=1e-9
            )
    with pytest.raises(ValueError, match="to_kind must be one of"):
        convert(x, "x0", "noise", x, t, path)


def test_override_keeps_every_other_field() -> None:
    path = paths.VPLinear()
    g = torch.Generator().manual_seed(3)
    x0, eps = torch.randn(4, 3, generator=g, dtype=F64), torch.randn(4, 3, generator=g, dtype=F64)
    t = torch.full((4,), 0.4, dtype=F64)
    x, values = truth(path, t, x0, eps)
    base = Prediction(x, 0.4, "x0", x0, Coefficients.at(path, 0.4, x))
    for kind in KINDS:
        new = torch.randn(4, 3, generator=g, dtype=F64)
        out = base.override(**{kind: new})
        assert out.get(kind) is new
        for other in KINDS:
            if other != kind:
                torch.testing.assert_close(out.get(other), values[other], rtol=1e-12, atol=1e-12)
    # Several at once, and the original is untouched.
    b_hat, s_hat = torch.ones(4, 3, dtype=F64), -torch.ones(4, 3, dtype=F64)
    both = base.override(velocity=b_hat, score=s_hat)
    assert both.velocity is b_hat and both.score is s_hat
    torch.testing.assert_close(both.x0, x0)
    torch.testing.assert_close(base.velocity, values["velocity"])
    with pytest.raises(ValueError, match="kind must be one of"):
        base.override(drift=b_hat)
    # replace() instead derives everything from the new value.
    replaced = base.replace("eps", eps)
    torch.testing.assert_close(replaced.x0, x0)


def test_model_wraps_a_callable() -> None:
    path = paths.Linear()
    model = Model(lambda x, t: x * t[:, None], path, predicts="velocity")
    x = torch.randn(5, 2, dtype=F64)
    pred = model(x, 0.5)
    torch.testing.assert_close(pred.velocity, 0.5 * x)
    torch.testing.assert_close(model.predict(x, 0.5, "x0"), (x - 0.5 * 0.5 * x) / 1.0)
    with pytest.raises(ValueError, match="predicts must be one of"):
        Model(lambda x, t: x, path, predicts="noise")
    with pytest.raises(TypeError, match="net must be callable"):
        Model(3, path)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"the network returned \(5, 1\) for x of shape \(5, 2\)"):
        Model(lambda x, t: x[:, :1], path)(x, 0.5)
    with pytest.raises(ValueError, match="t has 2 entries"):
        model(x, torch.tensor([0.1, 0.2], dtype=F64))


class Recorder(torch.nn.Module):
    """F(x, c_noise) = 3 x + c_noise, remembering its inputs."""

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        self.x_in, self.c_noise = x, c_noise
        return 3 * x + c_noise.reshape(-1, 1)


def edm_denoiser(x_tilde: torch.Tensor, s: torch.Tensor, sd: float) -> torch.Tensor:
    """Karras et al. (2022), Table 1, with F as in Recorder."""
    s = s.reshape(-1, 1)
    c_skip = sd**2 / (s**2 + sd**2)
    c_out = s * sd / torch.sqrt(s**2 + sd**2)
    c_in = 1 / torch.sqrt(s**2 + sd**2)
    c_noise = torch.log(s) / 4
    return c_skip * x_tilde + c_out * (3 * c_in * x_tilde + c_noise)


@pytest.mark.parametrize(
    "path", [paths.EDM(), paths.VPLinear(), paths.Linear(), paths.VE()], ids=repr
)
def test_preconditioning_is_edm_in_edm_coordinates(path: GaussianPath) -> None:
    g = torch.Generator().manual_seed(4)
    t = torch.tensor([0.05, 0.3, 0.7, 0.95], dtype=F64)
    x = torch.randn(4, 3, generator=g, dtype=F64)
    net = Recorder()
    out = Preconditioned(net, path, sigma_data=0.5)(x, t)
    alpha = path.alpha(t).reshape(-1, 1)
    s = path.sigma(t) / path.alpha(t)  # the EDM sigma
    torch.testing.assert_close(out, edm_denoiser(x / alpha, s, 0.5), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(net.c_noise, torch.log(s) / 4, rtol=1e-12, atol=1e-12)
    if isinstance(path, paths.EDM):
        sigma = (80.0 * t).reshape(-1, 1)
        torch.testing.assert_close(net.x_in, x / torch.sqrt(sigma**2 + 0.25))


def test_preconditioning_finite_where_alpha_is_zero() -> None:
    net = Recorder()
    x = torch.randn(2, 3, dtype=F64)
    out = Preconditioned(net, paths.Linear(), sigma_data=0.5)(x, torch.ones(2, dtype=F64))
    # alpha = 0: c_skip = 0, c_out = sigma_data, c_in = 1 / sigma; c_noise is the clamped logsnr.
    c_noise = paths.LOGSNR_LIMIT / 8
    torch.testing.assert_close(out, 0.5 * (3 * x + c_noise))
    assert bool(torch.isfinite(out).all())
    with pytest.raises(ValueError, match="sigma_data"):
        Preconditioned(net, paths.Linear(), sigma_data=0.0)


def test_edm_loss_weight() -> None:
    t = torch.tensor([0.01, 0.5], dtype=F64)
    s = 80.0 * t
    expected = (s**2 + 0.25) / (s * 0.5) ** 2
    torch.testing.assert_close(edm_loss_weight(paths.EDM(), t), expected)
    assert math.isfinite(float(edm_loss_weight(paths.VPLinear(), t).sum()))
