"""State.replace (the hot-path copy every solver step makes) behaves as dataclasses.replace."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from interpolant.solvers import State


def test_replace_changes_only_the_given_fields():
    x, y = torch.zeros(2, 3), torch.ones(2, 3)
    state = State(x, history=(1.0,), step=4)
    new = state.replace(x=y)
    assert type(new) is State and new is not state
    assert new.x is y and new.history == (1.0,) and new.step == 4
    assert state.x is x  # frozen: the original is untouched
    assert state.replace(step=5, history=()) == dataclasses.replace(state, step=5, history=())


def test_replace_rejects_unknown_fields():
    with pytest.raises(TypeError):
        State(torch.zeros(1)).replace(velocity=torch.zeros(1))


def test_replace_keeps_subclasses():
    @dataclasses.dataclass(frozen=True)
    class Tagged(State):
        tag: str = "a"

    new = Tagged(torch.zeros(1), tag="b").replace(step=3)
    assert type(new) is Tagged and new.tag == "b" and new.step == 3
