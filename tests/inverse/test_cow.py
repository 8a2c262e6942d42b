"""COW: the exact forward transition, region replacement, region preservation, the solver
signature."""

from __future__ import annotations

import pytest
import torch

from interpolant.data.oracles import lowrank64
from interpolant.inverse.cow import COWSettings, ReplaceRegion, cow, cow_solve, renoise
from interpolant.inverse.operators import Inpaint
from interpolant.paths import VP, Cosine
from interpolant.solvers import State, Step, node_at


def _setup(n: int = 6):
    gm = lowrank64(dim=16)
    x = gm.sample(n, torch.Generator().manual_seed(0))
    mask = torch.zeros(16, dtype=torch.float64)
    mask[:8] = 1
    return gm, gm.model(VP()), x, mask


@pytest.mark.parametrize("path", [VP(), Cosine()], ids=["vp", "cosine"])
def test_renoise_is_the_forward_transition(path) -> None:
    # x_s = alpha_s x0 + sigma_s eps, renoised to t, must be distributed as alpha_t x0 + sigma_t e.
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((200_000, 1), 0.7, dtype=torch.float64)
    s, t = 0.3, 0.75
    a_s, s_s = node_at(path, s).alpha, node_at(path, s).sigma
    a_t, s_t = node_at(path, t).alpha, node_at(path, t).sigma
    x_s = a_s * x0 + s_s * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    x_t = renoise(path, x_s, s, t, torch.randn(x0.shape, generator=g, dtype=torch.float64))
    assert abs(float(x_t.mean()) - a_t * 0.7) < 0.005
    assert abs(float(x_t.std()) - s_t) < 0.005
    # Zero noise: the mean (alpha_t / alpha_s) x.
    torch.testing.assert_close(renoise(path, x_s, s, t, torch.zeros_like(x_s)), a_t / a_s * x_s)
    with pytest.raises(ValueError, match="t_to >= t_from"):
        renoise(path, x_s, t, s, x_s)


def test_replace_region_overwrites_only_the_region_at_listed_times() -> None:
    mask = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    x = torch.zeros(2, 3, dtype=torch.float64)
    target = torch.ones(2, 3, dtype=torch.float64)
    hook = ReplaceRegion(mask, {0.5: target})

    def arriving(t: float) -> Step:
        return Step(0, node_at(VP(), 0.6), node_at(VP(), t), None, None)

    out = hook.on_step(State(x), arriving(0.5), None, None).x  # type: ignore[arg-type]
    torch.testing.assert_close(out, mask.expand(2, 3))
    assert hook.on_step(State(x), arriving(0.4), None, None).x is x  # type: ignore[arg-type]


def test_cow_keeps_the_seed_region_exactly_and_changes_the_rest() -> None:
    _, model, x, mask = _setup()
    res = cow(model, x, mask, seed=0)
    torch.testing.assert_close(res.x * mask, x * mask, rtol=0, atol=0)
    rest = (res.x - x * mask) * (1 - mask)  # canvas background is 0
    assert float(rest.abs().mean()) > 0.1
    # NFE: inversions (b - 1) + (r - 1), 10 cycles of (b - r) steps, r final steps.
    assert res.nfe == 6 + 4 + 10 * 2 + 5
    # Without the final paste the region stays close to the seed, and much closer than the
    # start of the generated half is to the background.
    loose = cow(model, x, mask, seed=0, exact_region=False).x
    torch.testing.assert_close(loose * (1 - mask), res.x * (1 - mask), rtol=0, atol=0)
    assert float(((loose - x) * mask).square().mean()) < float((x * mask).square().mean())


def test_cow_generated_half_agrees_with_the_seed() -> None:
    gm, model, x, mask = _setup(20)
    out = cow(model, x, mask, seed=1).x
    path = model.path
    agree = gm.posterior_weights(out, 0.0, path).argmax(1) == gm.posterior_weights(
        x, 0.0, path
    ).argmax(1)
    assert float(agree.double().mean()) >= 0.7


def test_cow_samples_do_not_depend_on_the_batch() -> None:
    _, model, x, mask = _setup(3)
    full = cow(model, x, mask, seed=5).x
    one = cow(model, x[1:2], mask, seed=5, index=[1]).x
    torch.testing.assert_close(full[1:2], one, rtol=0, atol=1e-10)


def test_cow_solve_reads_the_region_from_a_mask_operator() -> None:
    _, model, x, mask = _setup(2)
    op = Inpaint(mask)
    out = cow_solve(model, op, op(x), steps=10, seed=0, cycles=3)
    ref = cow(model, x, mask, settings=COWSettings(cycles=3), seed=0)
    torch.testing.assert_close(out.x, ref.x, rtol=0, atol=0)
    assert out.nfe == ref.nfe == 6 + 4 + 3 * 2 + 5


def test_cow_rejects_bad_levels_and_masks() -> None:
    _, model, x, mask = _setup(2)
    with pytest.raises(ValueError, match="replace_level < back_level"):
        cow(model, x, mask, settings=COWSettings(replace_level=0.7, back_level=0.5))
    with pytest.raises(ValueError, match="mask must have the shape"):
        cow(model, x, mask[:4])
    with pytest.raises(ValueError, match="more steps"):
        cow(model, x, mask, steps=2)
    with pytest.raises(ValueError, match="deterministic"):
        cow(model, x, mask, solver="dpmpp_2m_sde")
