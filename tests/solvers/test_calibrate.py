"""Per-model grid calibration: it transfers to noise it never saw, counts what it costs, caches
its result under a key that names the model, and refuses what it cannot do."""

import json

import pytest
import torch

import interpolant as ip
from interpolant.data.oracles import ring2d
from interpolant.errors import UserError
from interpolant.paths import EDM
from interpolant.randomness import Streams
from interpolant.solvers import calibrate, reference_sample


@pytest.fixture(scope="module")
def model():
    return ring2d().model(EDM())


def rmse(model, spec, noise):
    x = ip.sample(model, noise, spec).x
    exact = reference_sample(model, noise)
    return float((x - exact).square().mean().sqrt())


@pytest.fixture(scope="module")
def calibrated(model, tmp_path_factory):
    cache = tmp_path_factory.mktemp("calibration")
    spec = ip.Sampler("dpmpp_2m", nfe=6)
    return calibrate(model, (2,), spec, draws=64, budget=40, cache_dir=cache, tag="ring"), cache


def test_calibrated_grid_transfers_to_fresh_noise(model, calibrated):
    result, _ = calibrated
    # Evaluation noise from another stream than the calibration's.
    noise = Streams(1, 256, "evaluation").normal((2,), dtype=torch.float64)
    default_grid = ip.Sampler("dpmpp_2m", nfe=6)  # Karras, sigma_min 0.002
    assert result.rmse <= result.start_rmse
    assert rmse(model, result.sampler, noise) < 0.7 * rmse(model, default_grid, noise)
    assert result.sampler.grid.name == "density" and result.sampler.nfe_used() == 6


def test_cost_is_counted_and_the_cache_is_reused(model, calibrated):
    result, cache = calibrated
    # Reference solve (a few hundred evaluations) plus runs x 6.
    assert result.nfe_spent > result.runs * 6 >= 6 * 10
    files = list(cache.glob("calibration-*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["key"] == result.key
    again = calibrate(
        model, (2,), ip.Sampler("dpmpp_2m", nfe=6), draws=64, budget=40, cache_dir=cache, tag="ring"
    )
    assert again == result  # read from the file: same grid, same recorded cost
    from interpolant.solvers.calibrate import calibration_key

    spec = ip.Sampler("dpmpp_2m", nfe=6)
    assert calibration_key(spec, (2,), 64, 40, 0, "ring") != calibration_key(
        spec, (2,), 64, 40, 0, "another checkpoint"
    )


def test_refusals(model, tmp_path):
    with pytest.raises(UserError, match="draws >= 2"):
        calibrate(model, (2,), nfe=6, draws=1)
    with pytest.raises(UserError, match="listed grid"):
        calibrate(model, (2,), ip.Sampler("euler", grid=[1.0, 0.5, 0.0]))
    bad = tmp_path / "x"
    bad.mkdir()
    spec = ip.Sampler("euler", nfe=4)
    from interpolant.solvers.calibrate import calibration_key

    key = calibration_key(spec, (2,), 8, 20, 0, "")
    (bad / f"calibration-{key}.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        calibrate(model, (2,), spec, draws=8, budget=20, cache_dir=bad)
