"""The one hook protocol: per-run state made by the loop (no state on hook instances), step hooks
that see the step's final prediction whatever their order, plan changes before the run,
trajectory recording, typed histories that select particles, and the sampler spec."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch

from interpolant import paths
from interpolant.data.oracles import ring2d
from interpolant.errors import UserError
from interpolant.predictions import Prediction
from interpolant.solvers import (
    FunctionHook,
    Hook,
    Plan,
    Sampler,
    State,
    Step,
    Trajectory,
    as_sampler,
    get_solver,
    sample,
)
from interpolant.solvers.base import Multistep, Output, Run
from interpolant.solvers.grids import Karras, Listed
from interpolant.solvers.unipc import UniPCHistory

NOISE = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def _model():
    return ring2d().model(paths.EDM())


@dataclass
class Seen:
    x0: list[torch.Tensor] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)


class Recorder(Hook[Seen]):
    """A step hook that records what each step's final prediction was."""

    def start(self, run: Run) -> Seen:
        return Seen()

    def on_step(self, x_state: State, step: Step, run: Run, state: Seen) -> State:
        assert step.pred is not None
        state.x0.append(step.pred.x0)
        state.steps.append(step.index)
        return x_state


class Shift(Hook[None]):
    """A prediction hook that moves x0 by a constant."""

    def on_prediction(self, pred: Prediction, node, run: Run, state: None) -> Prediction:
        return pred.replace("x0", pred.x0 + 0.25)


def test_step_hooks_see_the_final_prediction_whatever_the_order():
    unhooked, model = sample(_model(), NOISE, solver="dpmpp_2m", nfe=6), _model()
    for hooks in ([Recorder(), Shift()], [Shift(), Recorder()]):
        recorder = next(h for h in hooks if isinstance(h, Recorder))
        result = sample(model, NOISE, solver="dpmpp_2m", nfe=6, hooks=hooks)
        seen = result.state(recorder)
        assert seen.steps == list(range(6))
        # The recorded x0 is the shifted one: the last prediction hook's output, not the model's.
        traj = Trajectory()
        again = sample(model, NOISE, solver="dpmpp_2m", nfe=6, hooks=[Shift(), traj])
        for a, b in zip(seen.x0, again.state(traj).x0):
            torch.testing.assert_close(a, b)
        assert not torch.allclose(result.x, unhooked.x)


def test_per_run_state_is_fresh_for_every_run_and_the_instance_holds_none():
    recorder = Recorder()
    a = sample(_model(), NOISE, solver="euler", nfe=3, hooks=[recorder])
    b = sample(_model(), NOISE[:2], solver="euler", nfe=5, hooks=[recorder])
    assert len(a.state(recorder).steps) == 3 and len(b.state(recorder).steps) == 5
    assert vars(recorder) == {}
    with pytest.raises(UserError, match="was not a hook of this run"):
        a.state(Recorder())


def test_prepare_changes_the_plan_before_the_run():
    class HalfGrid(Hook[None]):
        def prepare(self, plan: Plan) -> Plan:
            return Plan(plan.model, plan.grid[2:], plan.x * 0.5)

    result = sample(_model(), NOISE, solver="euler", steps=6, hooks=[HalfGrid()])
    assert result.nfe == 4 and result.grid.shape == (5,)


def test_trajectory_records_the_start_every_state_and_every_x0():
    traj = Trajectory()
    result = sample(_model(), NOISE, solver="heun", nfe=7, hooks=[traj])
    rec = result.state(traj)
    assert len(rec.states) == len(rec.times) == 5 and len(rec.x0) == 4
    torch.testing.assert_close(rec.states[0], NOISE * 80.0)
    assert torch.equal(rec.states[-1], result.x) and rec.times[-1] == 0.0
    sparse = Trajectory(every=2)
    rec2 = sample(_model(), NOISE, solver="euler", steps=5, hooks=[sparse]).state(sparse)
    assert len(rec2.states) == 1 + 3  # after steps 2, 4 and the last


def test_function_hooks_and_callback():
    calls: list[int] = []
    hook = FunctionHook(on_step=lambda s, step, run: s.replace(x=s.x * 1.0))
    result = sample(
        _model(),
        NOISE,
        solver="euler",
        nfe=4,
        hooks=[hook],
        callback=lambda i: calls.append(i.index),
    )
    assert calls == [0, 1, 2, 3] and result.nfe == 4
    with pytest.raises(ValueError, match="on_prediction= and/or on_step="):
        FunctionHook()


def test_histories_select_particles_by_their_declared_fields():
    index = torch.tensor([2, 0, 0])
    x = torch.arange(8.0).view(4, 2)
    hist = Multistep((Output(-1.0, x), Output(0.5, x + 10)))
    picked = State(x, hist, 3).index_select(index)
    assert torch.equal(picked.x, x[index]) and picked.step == 3
    assert torch.equal(picked.history.outputs[1].x0, (x + 10)[index])
    assert picked.history.outputs[0].logsnr == -1.0
    node = paths.node_at(paths.EDM(), 0.5)
    uni = UniPCHistory(x, 2, (Output(0.0, x),), node)
    chosen = uni.index_select(index)
    assert torch.equal(chosen.x, x[index]) and chosen.node == node and chosen.order == 2


def test_solver_states_from_a_run_select_particles():
    # Every multistep solver's state after a few steps can be resampled.
    for name in ("dpmpp_2m", "dpmpp_3m", "unipc", "adams", "dpmpp_2m_sde", "lml"):
        seen = {}

        def grab(s, step, run, seen=seen):
            seen["state"] = s
            return s

        sample(_model(), NOISE, solver=name, nfe=6, seed=0, hooks=[FunctionHook(on_step=grab)])
        state = seen["state"]
        picked = state.index_select(torch.tensor([1, 1, 0, 5, 4, 3]))
        assert picked.x.shape == state.x.shape


def test_sampler_spec_resolves_budgets_once_and_round_trips():
    spec = Sampler("heun", nfe=9, grid="karras")
    assert spec.steps_used() == 5 and spec.nfe_used() == 9
    assert Sampler.from_config(spec.config()) == spec
    assert spec.times(paths.EDM()).shape == (6,)
    assert as_sampler(spec, steps=3).steps_used() == 3  # a shortcut replaces the budget
    assert as_sampler(None, solver={"name": "ddim", "eta": 1.0}, nfe=4).solver.stochastic
    listed = Sampler("euler", grid=[1.0, 0.5, 0.0])
    assert isinstance(listed.grid, Listed) and listed.steps_used() == 2
    assert Sampler("unipc", nfe=5, grid={"name": "edm", "rho": 3}).grid == Karras(rho=3)
    assert Sampler("euler", nfe=3, solver_dtype=torch.float64).dtype == torch.float64
    result = sample(_model(), NOISE, spec)
    assert result.sampler == spec and result.nfe == 9


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "give exactly one of nfe= or steps="),
        ({"nfe": 4, "steps": 4}, "give exactly one of nfe= or steps="),
        ({"nfe": 4, "grid": [1.0, 0.0]}, "a listed grid fixes the steps"),
        ({"steps": 3, "grid": [1.0, 0.0]}, "cannot run steps=3"),
        ({"nfe": 4, "grid": "spiral"}, "unknown grid 'spiral'"),
        ({"nfe": 4, "grid": [0.0, 1.0]}, "must strictly decrease"),
        ({"nfe": 4, "solver_dtype": "float16"}, "solver_dtype must be None or one of"),
        ({"nfe": 4, "t_max": 0.0}, r"t_max must be a finite number in \(0, 1\]"),
        ({"nfe": 1, "solver": "heun", "steps": None}, None),
        ({"nfe": 0, "solver": "heun"}, "nfe=0 is too small for solver 'heun'"),
    ],
)
def test_sampler_spec_refuses_bad_settings_with_a_reason(kwargs, message):
    if message is None:
        assert Sampler(**kwargs).steps_used() == 1
        return
    with pytest.raises(UserError, match=message):
        Sampler(**kwargs)


def test_sample_refuses_a_plain_callable_and_bad_index():
    with pytest.raises(TypeError, match=r"wrap a network with ip\.Model"):
        sample(lambda x, t: x, NOISE, nfe=4)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="index has 2 entries for a batch of 6"):
        sample(_model(), NOISE, nfe=4, index=[0, 1])


def test_deterministic_runs_leave_the_global_generator_alone():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    sample(_model(), NOISE, solver="dpmpp_2m", nfe=4)
    assert torch.equal(torch.get_rng_state(), before)
    # A stochastic run without a seed draws one from it (so torch.manual_seed fixes the run).
    torch.manual_seed(1)
    a = sample(_model(), NOISE, solver={"name": "ddim", "eta": 1.0}, nfe=4).x
    torch.manual_seed(1)
    b = sample(_model(), NOISE, solver={"name": "ddim", "eta": 1.0}, nfe=4).x
    assert torch.equal(a, b)
    assert get_solver("ddim", eta=1.0).stochastic
