"""Configurable objects: config round trips, validation in one place, help from field metadata,
and registries that build from a name, a config or the object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest

from interpolant.configurable import (
    Configurable,
    Registry,
    boolean,
    number,
    one_of,
    option,
    optional,
)
from interpolant.errors import UserError
from interpolant.solvers import GRIDS, SOLVERS


class Thing(Configurable):
    name: ClassVar[str] = "thing"


@dataclass(frozen=True)
class Widget(Thing):
    name: ClassVar[str] = "widget"
    size: float = option(1.0, help="a size > 0", check=number(0, open_lo=True))
    mode: str = option("a", help="a or b", check=one_of("a", "b"))
    flag: bool = option(False, help="a switch", check=boolean)
    limit: int | None = option(
        None, help="an optional count", check=optional(number(1, integer=True))
    )

    def validate(self) -> None:
        if self.flag and self.limit is None:
            raise UserError("widget: flag needs a limit")


def test_config_round_trip_repr_and_equality():
    w = Widget(2.5, "b", True, 3)
    assert w.config() == {"name": "widget", "size": 2.5, "mode": "b", "flag": True, "limit": 3}
    assert Widget.from_config(w.config()) == w
    assert repr(w) == "Widget(size=2.5, mode='b', flag=True, limit=3)"
    assert w.replace(size=4.0).size == 4.0


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"size": 0.0}, r"Widget: size must be a finite number > 0, got 0.0"),
        ({"size": float("inf")}, r"size must be a finite number > 0"),
        ({"size": True}, r"size must be a finite number > 0, got True"),
        ({"mode": "c"}, r"mode must be one of 'a', 'b', got 'c'"),
        ({"flag": 1}, r"flag must be True or False, got 1"),
        ({"limit": 0}, r"limit must be None or an int >= 1, got 0"),
        ({"flag": True}, r"flag needs a limit"),
    ],
)
def test_validation_names_the_field_the_rule_and_the_value(values, message):
    with pytest.raises(UserError, match=message):
        Widget(**values)
    with pytest.raises(UserError, match=message):
        Widget(1.0).replace(**values)  # replace validates again


def test_unknown_keys_and_wrong_names_are_refused_by_name():
    with pytest.raises(UserError, match=r"widget has no option 'colour'; its options are"):
        Widget.from_config({"name": "widget", "colour": "red"})
    with pytest.raises(UserError, match="config is for 'gadget', not 'widget'"):
        Widget.from_config({"name": "gadget"})


def test_help_comes_from_the_field_metadata():
    rows = {name: (default, text) for name, _, default, text in Widget.options()}
    assert rows["size"] == (1.0, "a size > 0") and rows["limit"] == (None, "an optional count")


def test_registry_builds_from_name_config_or_object():
    things: Registry[Thing] = Registry("thing", Thing)
    things.register(Widget, "w")
    assert things.build("widget", size=2.0) == Widget(2.0)
    assert things.build("W") == Widget()  # names are case-insensitive
    assert things.build({"name": "w", "mode": "b"}) == Widget(mode="b")
    obj = Widget(3.0)
    assert things.build(obj) is obj
    with pytest.raises(UserError, match="unknown thing 'gizmo'; choose one of"):
        things.build("gizmo")
    with pytest.raises(UserError, match="options are only used with a thing name"):
        things.build(obj, size=1.0)
    with pytest.raises(UserError, match="needs a 'name' key"):
        things.build({"size": 1.0})


def test_every_registered_solver_and_grid_round_trips_through_its_config():
    for registry in (SOLVERS, GRIDS):
        for name in registry:
            if name == "listed":
                obj = registry.build(name, t=(1.0, 0.5, 0.0))
            else:
                obj = registry.build(name)
            assert registry.build(obj.config()) == obj, name
            for option_name, _, _, text in type(obj).options():
                assert text, f"{name}.{option_name} has no help text"
