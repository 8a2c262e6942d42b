"""The solver set's contract: registry, options and their validation, NFE budgets, float64
solver arithmetic for float32 models, and the final step to sigma = 0."""

from __future__ import annotations

import math

import pytest
import torch

from interpolant import paths
from interpolant.data.oracles import GaussianMixture, three_modes
from interpolant.solvers import SOLVERS, Trajectory, get_solver, sample
from interpolant.solvers.unipc import UniPC

NEW = ("dpmpp_3m", "dpmpp_2m_sde", "unipc", "sde_euler", "pc")


def _oracle() -> GaussianMixture:
    return three_modes()


def test_new_solvers_are_registered_and_rebuild_from_their_config():
    for name in NEW:
        assert name in SOLVERS
    for name, options in [
        ("dpmpp_3m", {"lower_order_final": False}),
        ("dpmpp_2m_sde", {"eta": 0.5}),
        ("unipc", {"order": 3, "use_corrector": False}),
        ("sde_euler", {"eps": 0.25}),
        ("pc", {"predictor": "sde_euler", "predictor_options": {"eps": 2.0}, "snr": 0.1}),
        ("pc", {"corrector": "ald", "n_corrector": 2}),
    ]:
        solver = get_solver(name, **options)
        config = solver.config()
        rebuilt = get_solver(config.pop("name"), **config)
        assert rebuilt.config() == solver.config()
        assert get_solver(solver.config()) == solver and repr(rebuilt) == repr(solver)


def test_unipc_order_is_the_instance_order():
    assert UniPC().order == 2 and SOLVERS["unipc"]().order == 2
    assert UniPC(order=3).order == 3 and UniPC(order=1).order == 1
    assert UniPC().order == 2  # another instance is untouched


def test_pc_costs_one_plus_n_corrector_evaluations_per_step():
    pc = get_solver("pc", n_corrector=2)
    assert pc.evals_per_step == 3 and pc.nfe_for_steps(10) == 10 + 2 * 9
    assert pc.steps_for_nfe(28) == 10 and pc.steps_for_nfe(27) == 9
    assert get_solver("pc", predictor="euler", n_corrector=0).stochastic is False


def test_unknown_solver_name():
    with pytest.raises(ValueError, match="unknown solver 'dpmpp_4m'"):
        get_solver("dpmpp_4m")
    with pytest.raises(ValueError, match="unknown solver"):
        sample(_oracle().model(paths.EDM()), torch.zeros(2, 2), solver="rk45", nfe=10)


@pytest.mark.parametrize(
    ("solver", "options", "nfe"),
    [
        ("dpmpp_3m", {}, 2),
        ("unipc", {"order": 3}, 2),
        ("unipc", {"order": 2}, 1),
        ("heun", {}, 0),
        ("pc", {"n_corrector": 2}, 0),
    ],
)
def test_nfe_too_small(solver, options, nfe):
    with pytest.raises(ValueError, match=f"nfe={nfe} is too small for solver '{solver}'"):
        sample(
            _oracle().model(paths.EDM()),
            torch.zeros(2, 2),
            solver={"name": solver, **options},
            nfe=nfe,
        )


def test_smallest_budgets_that_work():
    assert get_solver("dpmpp_3m").steps_for_nfe(3) == 3
    assert get_solver("unipc", order=3).steps_for_nfe(3) == 3
    assert get_solver("heun").steps_for_nfe(1) == 1  # one Euler step to sigma = 0
    assert get_solver("pc", n_corrector=5).steps_for_nfe(1) == 1


@pytest.mark.parametrize(
    ("solver", "options", "message"),
    [
        ("ddim", {"eta": 2.0}, r"eta must be a finite number in \[0, 1\], got 2.0"),
        ("ddim", {"eta": -0.1}, r"eta must be a finite number in \[0, 1\]"),
        ("dpmpp_2m_sde", {"eta": -1.0}, "eta must be a finite number >= 0"),
        ("dpmpp_2m_sde", {"eta": math.nan}, "eta must be a finite number >= 0"),
        ("dpmpp_2m_sde", {"eta": "1"}, "eta must be a finite number >= 0"),
        ("dpmpp_3m", {"lower_order_final": "no"}, "lower_order_final must be True or False"),
        ("unipc", {"order": 4}, "order must be one of 1, 2, 3"),
        ("unipc", {"order": True}, "order must be one of 1, 2, 3"),
        ("unipc", {"use_corrector": 1}, "use_corrector must be True or False"),
        ("unipc", {"variant": "bh3"}, "variant must be one of 'bh1', 'bh2'"),
        ("sde_euler", {"eps": -0.5}, "eps must be None or a finite number >= 0"),
        ("sde_euler", {"eps": math.inf}, "eps must be None or a finite number >= 0"),
        ("sde_euler", {"eps": "high"}, "eps must be None or a finite number >= 0 or a callable"),
        ("sde_euler", {"eps": 1.0, "g": 1.0}, "not both"),
        ("sde_euler", {"g": -1.0}, "g must be None or a finite number >= 0"),
        ("pc", {"snr": 0.0}, "snr must be a finite number > 0"),
        ("pc", {"n_corrector": -1}, "n_corrector must be an int >= 0"),
        ("pc", {"n_corrector": 1.5}, "n_corrector must be an int >= 0"),
        ("pc", {"predictor": "heun"}, "predictor must be a first-order solver"),
        ("pc", {"predictor": "dpmpp_2m"}, "predictor must be a first-order solver"),
        ("pc", {"predictor": "pc"}, "predictor must be a first-order solver"),
        ("pc", {"predictor": "ddim", "predictor_options": {"eta": 3.0}}, "eta must be a finite"),
        ("pc", {"corrector": "hmc"}, "corrector must be one of"),
        ("ddim", {"etta": 1.0}, r"ddim has no option 'etta'; its options are \['eta', 'x0_var'\]"),
    ],
)
def test_bad_options(solver, options, message):
    with pytest.raises(ValueError, match=message):
        get_solver(solver, **options)


@pytest.mark.parametrize("path_name", ["edm", "vp", "linear"])
@pytest.mark.parametrize(("solver", "options"), [("dpmpp_3m", {}), ("unipc", {"order": 3})])
def test_float64_arithmetic_with_a_float32_model(path_name, solver, options):
    # The model runs in float32 either way; float64 solver arithmetic must give a float32
    # result closer to the all-float64 run than float32 arithmetic does (measured: 0.08-0.21x).
    gm, path = _oracle(), paths.get_path(path_name)
    noise = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    kwargs = {"solver": {"name": solver, **options}, "steps": 100}
    exact = sample(gm.model(path), noise, **kwargs).x
    model32 = gm.model(path, dtype=torch.float32)
    mixed = sample(model32, noise.float(), solver_dtype="float64", **kwargs).x
    single = sample(model32, noise.float(), **kwargs).x
    assert mixed.dtype == torch.float32 and single.dtype == torch.float32
    err_mixed = float((mixed.double() - exact).abs().max())
    err_single = float((single.double() - exact).abs().max())
    assert err_mixed < 0.5 * err_single, (err_mixed, err_single)


@pytest.mark.parametrize(
    ("solver", "options"),
    [("dpmpp_3m", {}), ("unipc", {"order": 3}), ("dpmpp_2m_sde", {}), ("sde_euler", {"eps": 0.0})],
)
def test_final_step_to_sigma_zero_returns_the_data_prediction(solver, options):
    # h is infinite at sigma = 0: the exponential integrators land on x0_hat exactly; the Euler
    # step on the linear path, x - t u, is x0_hat too.
    model = _oracle().model(paths.Linear())
    noise = torch.randn(4, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    trajectory = Trajectory()
    result = sample(
        model, noise, solver={"name": solver, **options}, steps=6, seed=0, hooks=[trajectory]
    )
    x0_last = result.state(trajectory).x0[-1]
    torch.testing.assert_close(result.x, x0_last, rtol=1e-13, atol=1e-13)
