"""Endpoint marks: attaching specs, reading them through a class hierarchy, reserved names and
sender installation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from vyked.core.endpoints import (
    MARKS_ATTRIBUTE,
    SENDER_ATTRIBUTE,
    check_reserved,
    collect,
    install_senders,
    mark,
    marks_of,
    specs_of,
)
from vyked.core.exceptions import DefinitionError, VykedError


@dataclass(frozen=True)
class Spec:
    kind: str
    name: str = ""


@dataclass(frozen=True)
class OtherSpec:
    name: str


def expose(func: Callable[..., Any]) -> Callable[..., Any]:
    return mark(func, Spec("api", func.__name__))


def outbound(func: Callable[..., Any]) -> Callable[..., Any]:
    return mark(func, Spec("request", func.__name__))


def is_api(spec: Spec) -> bool:
    return spec.kind == "api"


# -- mark -------------------------------------------------------------------------------------


def test_mark_returns_the_function_itself() -> None:
    def handler(x: int) -> int:
        """Doubles."""
        return 2 * x

    marked = mark(handler, Spec("api"))
    assert marked is handler
    assert marked(4) == 8
    assert marked.__name__ == "handler" and marked.__doc__ == "Doubles."
    assert marks_of(handler) == (Spec("api"),)


def test_marks_stack_in_decorator_order() -> None:
    def handler() -> None: ...

    mark(handler, Spec("api", "inner"))
    mark(handler, OtherSpec("middle"))
    mark(handler, Spec("api", "outer"))
    assert getattr(handler, MARKS_ATTRIBUTE) == (Spec("api", "inner"), OtherSpec("middle"), Spec("api", "outer"))
    assert specs_of(handler, Spec) == (Spec("api", "inner"), Spec("api", "outer"))
    assert specs_of(handler, OtherSpec) == (OtherSpec("middle"),)
    assert specs_of(handler, Spec, lambda s: s.name == "outer") == (Spec("api", "outer"),)


def test_an_unmarked_object_has_no_marks() -> None:
    assert marks_of(len) == ()
    assert marks_of(object()) == ()
    assert specs_of(print, Spec) == ()


def test_mark_refuses_what_is_not_callable() -> None:
    with pytest.raises(DefinitionError, match="decorates a function"):
        mark(42, Spec("api"))  # type: ignore[type-var]


def test_a_marked_method_still_works_on_a_plain_instance() -> None:
    class Service:
        factor = 3

        @expose
        def triple(self, x: int) -> int:
            return self.factor * x

    assert Service().triple(2) == 6


# -- collect ----------------------------------------------------------------------------------


class Base:
    @expose
    def ping(self) -> str:
        return "base ping"

    @expose
    def echo(self, value: object) -> object:
        return value

    @outbound
    def fetch(self) -> None: ...

    def helper(self) -> None: ...


def test_collect_reads_the_marked_methods() -> None:
    assert collect(Base, Spec) == {
        "ping": (Spec("api", "ping"),),
        "echo": (Spec("api", "echo"),),
        "fetch": (Spec("request", "fetch"),),
    }
    assert collect(Base, Spec, is_api) == {"ping": (Spec("api", "ping"),), "echo": (Spec("api", "echo"),)}
    assert collect(Base, OtherSpec) == {}


def test_collect_walks_the_bases() -> None:
    class Mixin:
        @expose
        def from_mixin(self) -> None: ...

    class Child(Base, Mixin):
        @expose
        def own(self) -> None: ...

    assert set(collect(Child, Spec, is_api)) == {"ping", "echo", "from_mixin", "own"}


def test_an_undecorated_override_keeps_the_base_specs() -> None:
    class Child(Base):
        def ping(self) -> str:
            return "child ping"

    found = collect(Child, Spec, is_api)
    assert found["ping"] == (Spec("api", "ping"),)
    assert Child().ping() == "child ping"  # the override serves them


def test_a_decorated_override_replaces_the_base_specs() -> None:
    class Child(Base):
        def echo(self, value: object) -> object:
            return value

        echo = mark(echo, Spec("api", "echo_v2"))

    assert collect(Child, Spec, is_api)["echo"] == (Spec("api", "echo_v2"),)
    assert collect(Base, Spec, is_api)["echo"] == (Spec("api", "echo"),)  # the base is untouched


def test_the_override_of_another_spec_type_does_not_hide_the_base() -> None:
    class Child(Base):
        def ping(self) -> str:
            return "child"

        ping = mark(ping, OtherSpec("ping"))

    # the override carries only an OtherSpec: for Spec, the base's marks are what is known
    assert collect(Child, OtherSpec) == {"ping": (OtherSpec("ping"),)}
    assert collect(Child, Spec, is_api)["ping"] == (Spec("api", "ping"),)


# -- check_reserved ---------------------------------------------------------------------------


class Framework:
    def __init__(self) -> None:
        self.host = None

    def start(self) -> None: ...

    def stop(self) -> None: ...

    @property
    def clients(self) -> list[object]:
        return []

    def _private(self) -> None: ...


@pytest.mark.parametrize("attribute", ["start", "stop", "clients", "host", "_private"])
def test_check_reserved_refuses_a_name_the_base_uses(attribute: str) -> None:
    class Mine(Framework):
        pass

    with pytest.raises(DefinitionError) as info:
        check_reserved(Mine, Framework, ["fine", attribute], {"host"})
    message = str(info.value)
    assert f"Mine.{attribute}" in message
    assert repr(attribute) in message
    assert "Framework" in message
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, VykedError)


def test_check_reserved_accepts_other_names_and_allowed_ones() -> None:
    class Mine(Framework):
        pass

    check_reserved(Mine, Framework, ["add", "multiply", "__init__"], {"host"})
    check_reserved(Mine, Framework, ["stop", "host"], {"host"}, allowed=["stop", "host"])
    with pytest.raises(DefinitionError, match="'start'"):
        check_reserved(Mine, Framework, ["stop", "start"], allowed=["stop"])


# -- install_senders --------------------------------------------------------------------------


def make_sender(method: Callable[..., Any], spec: Spec) -> Callable[..., Any]:
    def sender(self: Any, *args: Any, **kwargs: Any) -> tuple[str, Any]:
        return ("sent " + spec.name, method(self, *args, **kwargs))

    return sender


class Client:
    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        install_senders(cls, Spec, make_sender, where=lambda s: s.kind == "request", what="@outbound")


def test_install_senders_replaces_marked_methods_and_keeps_their_identity() -> None:
    class Calc(Client):
        @outbound
        def add(self, a: int, b: int) -> dict[str, int]:
            """Adds remotely."""
            return {"a": a, "b": b}

        @expose
        def local(self) -> str:
            return "not replaced"

        def plain(self) -> str:
            return "plain"

    calc = Calc()
    assert calc.add(1, 2) == ("sent add", {"a": 1, "b": 2})
    assert calc.local() == "not replaced"
    assert calc.plain() == "plain"
    assert Calc.add.__name__ == "add"
    assert Calc.add.__doc__ == "Adds remotely."
    assert Calc.add.__qualname__.endswith("Calc.add")
    assert getattr(Calc.add, SENDER_ATTRIBUTE) is True
    assert specs_of(Calc.add, Spec) == (Spec("request", "add"),)  # the marks travel with it
    assert collect(Calc, Spec) == {"add": (Spec("request", "add"),), "local": (Spec("api", "local"),)}


def test_install_senders_does_not_wrap_again_in_subclasses() -> None:
    class Calc(Client):
        @outbound
        def add(self, a: int) -> int:
            return a

    sender = Calc.__dict__["add"]

    class MoreCalc(Calc):
        pass

    class Renamed(Calc):
        send_add = Calc.add  # an inherited sender put in a subclass's own namespace

    assert MoreCalc().add(1) == ("sent add", 1)  # not ("sent add", ("sent add", 1))
    assert "add" not in MoreCalc.__dict__
    assert Renamed.__dict__["send_add"] is sender
    assert Renamed().send_add(2) == ("sent add", 2)


def test_a_decorated_override_in_a_subclass_gets_its_own_sender() -> None:
    class Calc(Client):
        @outbound
        def add(self, a: int) -> int:
            return a

    class Newer(Calc):
        def add(self, a: int) -> int:
            return a * 10

        add = mark(add, Spec("request", "add_v2"))

    assert Newer().add(1) == ("sent add_v2", 10)
    assert Calc().add(1) == ("sent add", 1)


def test_install_senders_refuses_two_specs_on_one_method() -> None:
    with pytest.raises(DefinitionError) as info:

        class Twice(Client):
            @outbound
            @outbound
            def add(self) -> None: ...

    assert "Twice.add" in str(info.value)
    assert "@outbound" in str(info.value)


def test_two_specs_of_which_one_is_filtered_out_are_fine() -> None:
    class Mixed(Client):
        @outbound
        @expose
        def add(self) -> int:
            return 1

    assert Mixed().add() == ("sent add", 1)
