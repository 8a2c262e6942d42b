"""Seed 2 reproduction: decoupled velocity/score fields and the SDE-correction claim rule."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant.paths import Linear
from interpolant.repro import seed02_sde_correction as seed02
from interpolant.solvers import Run, node_at

EPS = seed02.QUICK.eps_values


@pytest.fixture(scope="module")
def quick_result():
    return seed02.REPRO(quick=True, seed=0)


def test_hook_changes_the_velocity_only() -> None:
    gmm, path = seed02.mixture(), Linear()
    x = torch.linspace(-3, 3, 7, dtype=torch.float64)[:, None]
    model = gmm.model(path)
    pred, node = model(x, 0.4), node_at(path, 0.4)
    run = Run.for_model(model, torch.tensor([0.4, 0.0], dtype=torch.float64))
    out = seed02.WrongVelocity(0.3).on_prediction(pred, node, run, None)
    torch.testing.assert_close(out.velocity, gmm.velocity(x, 0.4, path) + 0.3 * torch.sin(2 * x))
    torch.testing.assert_close(out.score, gmm.score(x, 0.4, path))
    torch.testing.assert_close(out.x0, gmm.denoiser(x, 0.4, path))


def test_quick_run_numbers_are_finite_and_complete(quick_result) -> None:
    numbers = quick_result.numbers
    expected = {"noise floor W1"} | {
        f"W1 {kind} velocity eps={e:g}" for kind in ("wrong", "exact") for e in EPS
    }
    assert set(numbers) == expected
    assert all(math.isfinite(v) and v >= 0 for v in numbers.values())
    assert quick_result.quick and quick_result.wall_time_s > 0
    assert quick_result.settings["n_samples"] == seed02.QUICK.n_samples


def test_quick_run_flag_is_the_rule_applied_to_its_numbers(quick_result) -> None:
    n, s = quick_result.numbers, seed02.QUICK
    floor = n["noise floor W1"]
    w = [n[f"W1 wrong velocity eps={e:g}"] for e in EPS]
    rule = (
        all(w[k + 1] <= w[k] + floor for k in range(len(w) - 1))
        and w[-1] <= s.near_factor * floor
        and w[0] >= s.far_factor * floor
    )
    assert quick_result.claim_held is rule
    assert ("claim holds" in quick_result.summary) is rule


@pytest.mark.parametrize(
    ("w1", "held"),
    [
        ([0.30, 0.20, 0.10, 0.05, 0.02], True),
        ([0.30, 0.20, 0.21, 0.05, 0.02], True),  # a rise within one floor is noise
        ([0.30, 0.20, 0.10, 0.13, 0.02], False),  # a rise of more than one floor
        ([0.30, 0.20, 0.10, 0.05, 0.031], False),  # eps_max more than 3 floors away
        ([0.04, 0.03, 0.03, 0.02, 0.02], False),  # the ODE is not far from the data
    ],
)
def test_claim_rule(w1, held) -> None:
    assert seed02.claim_rule(w1, 0.01, seed02.Settings()) is held
