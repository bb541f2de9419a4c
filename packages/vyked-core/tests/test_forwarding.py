"""``forwarder``: senders written with their method's own parameter list."""

from __future__ import annotations

import functools
import inspect
from typing import Any

import pytest

from vyked.core.forwarding import LOCALS, RESULT, SELF, forwarder, keyword_caller, parameter, returns_locals


def then(*arguments: Any) -> tuple[Any, ...]:
    return arguments


class Client:
    def every_kind(self, x, name="n", *rest, key=1, **extra):  # type: ignore[no-untyped-def]
        return locals()

    def positional_only(self, a, /, b):  # type: ignore[no-untyped-def]
        return locals()

    def keyword_only(self, *, a, b=2):  # type: ignore[no-untyped-def]
        return locals()


def sender_of(method: Any, arguments: tuple[Any, ...] = (SELF, "endpoint", RESULT, 10.0)) -> Any:
    return functools.update_wrapper(forwarder(method, then, arguments), method)


def test_the_sender_calls_its_method_with_the_arguments_as_given_and_hands_on_what_it_returned() -> None:
    client, send = Client(), sender_of(Client.every_kind)
    assert send(client, 1) == (client, "endpoint", Client.every_kind(client, 1), 10.0)
    assert send(client, 1, "a", 3, 4, key=2, z=5)[2] == {
        "self": client,
        "x": 1,
        "name": "a",
        "rest": (3, 4),
        "key": 2,
        "extra": {"z": 5},
    }
    assert send(client, x=7, name="b")[2]["x"] == 7
    assert send(client, 1)[2]["name"] == "n"  # the method's default, the same object


def test_the_sender_has_the_methods_signature_and_refuses_what_the_method_refuses() -> None:
    client = Client()
    send = sender_of(Client.every_kind)
    assert inspect.signature(forwarder(Client.every_kind, then, (RESULT,))) == inspect.signature(Client.every_kind)
    with pytest.raises(TypeError, match=r"every_kind\(\) missing 1 required positional argument: 'x'"):
        send(client)
    positional = sender_of(Client.positional_only)
    assert positional(client, 1, b=2)[2] == {"self": client, "a": 1, "b": 2}
    with pytest.raises(TypeError, match="positional-only"):
        positional(client, a=1, b=2)
    keywords = sender_of(Client.keyword_only)
    assert keywords(client, a=1)[2] == {"self": client, "a": 1, "b": 2}
    with pytest.raises(TypeError):
        keywords(client, 1)


def test_a_method_without_a_readable_signature_gets_the_generic_sender() -> None:
    calls: list[tuple[Any, ...]] = []

    class Opaque:
        """A callable whose signature inspect cannot read."""

        __signature__ = "not a signature"  # inspect.signature raises TypeError

        def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            calls.append(args)
            return dict(kwargs)

    with pytest.raises(TypeError):
        inspect.signature(Opaque())
    client = Client()
    send = forwarder(Opaque(), then, (SELF, RESULT))
    assert send(client, 1, a=2) == (client, {"a": 2})
    assert calls == [(client, 1)]

    def anything(*args: Any, **kwargs: Any) -> dict[str, Any]:  # no positional self to name
        return {"args": args, **kwargs}

    assert forwarder(anything, then, (RESULT, SELF))(client, 1, b=2) == ({"args": (client, 1), "b": 2}, client)


def test_parameter_names_of_the_generated_code_cannot_be_shadowed() -> None:
    def method(self, _vyked_method):  # type: ignore[no-untyped-def]
        return {"value": _vyked_method}

    client = Client()
    assert forwarder(method, then, (RESULT,))(client, 3) == ({"value": 3},)


def test_a_decorated_method_is_called_with_what_its_wrapper_takes() -> None:
    def naming(method: Any) -> Any:
        @functools.wraps(method)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("app_name", "billing")  # fills in an argument of the method's
            return method(self, *args, **kwargs)

        return wrapper

    class Named:
        @naming
        def create(self, user, app_name=None):  # type: ignore[no-untyped-def]
            return locals()

    client = Named()
    send = functools.update_wrapper(forwarder(Named.create, then, (RESULT,)), Named.create)
    assert send(client, "ann") == ({"self": client, "user": "ann", "app_name": "billing"},)
    assert send(client, "bob", app_name="crm")[0]["app_name"] == "crm"


def test_a_then_named_by_a_string_is_the_method_of_self_at_call_time() -> None:
    class Base:
        def send(self, endpoint: str, params: Any) -> tuple[str, str, Any]:
            return ("base", endpoint, params)

        def echo(self, x):  # type: ignore[no-untyped-def]
            return {"x": x}

    class Override(Base):
        def send(self, endpoint: str, params: Any) -> tuple[str, str, Any]:
            return ("override", endpoint, params)

    echo = forwarder(Base.echo, "send", ("echo", RESULT))
    assert echo(Base(), 1) == ("base", "echo", {"x": 1})
    assert echo(Override(), 2) == ("override", "echo", {"x": 2})
    generic = forwarder(lambda *a: {"a": a}, "send", ("echo", RESULT))  # no positional self
    client = Override()
    assert generic(client, 3) == ("override", "echo", {"a": (client, 3)})
    with pytest.raises(ValueError, match="not a method name"):
        forwarder(Base.echo, "send(); import os", (RESULT,))


def test_only_a_body_of_return_locals_counts_as_returning_locals() -> None:
    def documented(self, x):  # type: ignore[no-untyped-def]
        """A docstring is no code."""
        return locals()

    def computes(self, x):  # type: ignore[no-untyped-def]
        y = x + 1  # in locals() too
        return locals()

    def copies(self, x):  # type: ignore[no-untyped-def]
        return dict(locals())

    def returns_a_dict(self, x):  # type: ignore[no-untyped-def]
        return {"x": x}

    async def asynchronous(self, x):  # type: ignore[no-untyped-def]
        return locals()

    def wrapper(self, x):  # type: ignore[no-untyped-def]
        return locals()

    assert returns_locals(documented) and returns_locals(Client.every_kind)
    for method in (computes, copies, returns_a_dict, asynchronous, functools.wraps(documented)(wrapper)):
        assert not returns_locals(method), method
    with pytest.raises(ValueError, match="return locals"):
        forwarder(computes, then, (LOCALS,))


def test_locals_is_what_the_method_would_return_without_calling_it() -> None:
    client = Client()
    everything = (LOCALS, parameter("key"), parameter("missing", "absent"), parameter("name", convert=str.upper))
    send = sender_of(Client.every_kind, everything)
    for args, kwargs in [((1,), {}), ((1, "a", 3, 4), {"key": 2, "z": 5}), ((), {"x": 7, "name": "b"})]:
        returned = Client.every_kind(client, *args, **kwargs)
        expected = {k: v for k, v in returned.items() if k not in ("self", "key", "name")}
        got = send(client, *args, **kwargs)
        assert got == (expected, returned["key"], "absent", returned["name"].upper())
        assert list(got[0]) == list(expected)  # in locals()'s order too
    with pytest.raises(TypeError, match=r"every_kind\(\) missing 1 required positional argument: 'x'"):
        send(client)
    assert sender_of(Client.keyword_only, (SELF, LOCALS))(client, a=1) == (client, {"a": 1, "b": 2})
    with pytest.raises(ValueError, match="goes with LOCALS"):
        forwarder(Client.every_kind, then, (RESULT, parameter("key")))


class Handlers:
    def plain(self, x, name="n"):  # type: ignore[no-untyped-def]
        return ("plain", x, name)

    def positional_only(self, a, /, b):  # type: ignore[no-untyped-def]
        return (a, b)

    def keyword_only(self, a, *, b):  # type: ignore[no-untyped-def]
        return (a, b)

    def anything(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return (args, kwargs)

    def nothing(self):  # type: ignore[no-untyped-def]
        return "nothing"

    def shadowing(self, _vyked_params):  # type: ignore[no-untyped-def]
        return _vyked_params

    def builtin_names(self, len, KeyError):  # type: ignore[no-untyped-def]
        return (len, KeyError)


def outcome(call: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return call(*args, **kwargs)
    except TypeError as exc:
        return ("TypeError", str(exc))


@pytest.mark.parametrize(
    "name", ["plain", "positional_only", "keyword_only", "anything", "nothing", "shadowing", "builtin_names"]
)
@pytest.mark.parametrize(
    "params",
    [{}, {"x": 1}, {"x": 1, "name": "a"}, {"name": "a", "x": 1}, {"x": 1, "zz": 2}, {"a": 1, "b": 2}, {"b": 2, "a": 1},
     {"_vyked_params": 3}, {"a": 1, "zz": 2}, {"len": 1, "KeyError": 2}],
)  # fmt: skip
def test_a_keyword_caller_has_the_outcome_of_a_keyword_call(name: str, params: dict[str, Any]) -> None:
    handler = getattr(Handlers(), name)
    assert outcome(keyword_caller(handler), dict(params)) == outcome(handler, **params)


def test_a_keyword_caller_passes_by_position_only_what_is_exactly_the_handlers_parameters() -> None:
    seen: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def spy(method: Any) -> Any:
        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            seen.append((args, kwargs))
            return method(*args, **kwargs)

        return wrapper

    class Spied:
        @spy
        def add(self, a, b):  # type: ignore[no-untyped-def]
            return a + b

    assert keyword_caller(Spied().add)({"a": 1, "b": 2}) == 3
    assert seen[-1][1] == {"a": 1, "b": 2}  # a decorator's wrapper gets its keywords

    def dressed(*args: Any, **kwargs: Any) -> Any:  # as vyked.testing.record dresses its recorder
        seen.append((args, kwargs))
        return sum(kwargs.values())

    dressed.__signature__ = inspect.signature(Spied.add)  # type: ignore[attr-defined]
    assert keyword_caller(dressed)({"self": 0, "a": 1, "b": 2}) == 3
    assert seen[-1] == ((), {"self": 0, "a": 1, "b": 2})
    calls: list[tuple[Any, ...]] = []

    class Counted:
        def add(self, a, b):  # type: ignore[no-untyped-def]
            calls.append((a, b))
            raise KeyError("the handler's own")  # not taken for a missing parameter

    with pytest.raises(KeyError, match="the handler's own"):
        keyword_caller(Counted().add)({"b": 2, "a": 1})
    assert calls == [(1, 2)]
