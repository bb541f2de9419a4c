"""The decorators only attach specs; services and clients check them when the class is created."""

from __future__ import annotations

from typing import Any

import pytest

from vyked.core.endpoints import collect
from vyked.core.exceptions import DefinitionError
from vyked.http import (
    HTTPService,
    HTTPServiceClient,
    RouteSpec,
    delete,
    get,
    head,
    options,
    patch,
    post,
    put,
    trace,
    websocket,
)
from vyked.http.decorators import routes_of


@pytest.mark.parametrize(
    ("decorator", "method"),
    [
        (get, "GET"),
        (post, "POST"),
        (put, "PUT"),
        (patch, "PATCH"),
        (delete, "DELETE"),
        (head, "HEAD"),
        (options, "OPTIONS"),
        (trace, "TRACE"),
    ],
)
def test_each_verb_attaches_its_method(decorator: Any, method: str) -> None:
    def handler(self: object, request: object) -> None: ...

    assert decorator(path="/x", required_params="q", timeout=2)(handler) is handler
    assert routes_of(handler) == (RouteSpec(method, ("/x",), ("q",), 2),)


def test_forms_of_the_decorator() -> None:
    @get
    def bare(self: object) -> None: ...

    @get()
    def empty(self: object) -> None: ...

    @get("/positional")
    def positional(self: object) -> None: ...

    @post(path=["/a", "/b"], required_params=["x", "y"])
    def listed(self: object) -> None: ...

    assert routes_of(bare) == (RouteSpec("GET", ()),)
    assert routes_of(empty) == (RouteSpec("GET", ()),)
    assert routes_of(positional)[0].paths == ("/positional",)
    assert routes_of(listed)[0].paths == ("/a", "/b")
    assert routes_of(listed)[0].required_params == ("x", "y")


def test_stacked_decorators_keep_every_spec() -> None:
    @put(path="/x")
    @post(path="/x")
    def save(self: object) -> None: ...

    assert [spec.method for spec in routes_of(save)] == ["POST", "PUT"]


def test_websocket_spec() -> None:
    @websocket(path="/ws")
    def chat(self: object) -> None: ...

    assert routes_of(chat) == (RouteSpec("GET", ("/ws",), websocket=True),)


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="timeout"):
        get(path="/x", timeout=0)
    with pytest.raises(TypeError, match="paths must be strings"):
        get(path=["/x", 3])  # type: ignore[list-item]


def test_a_service_route_needs_a_path() -> None:
    with pytest.raises(DefinitionError, match=r"needs a path, as in @get\(path='/things'\)"):

        class NoPath(HTTPService):
            @get()
            def things(self, request: object) -> None: ...


def test_a_service_path_starts_with_a_slash() -> None:
    with pytest.raises(ValueError, match="must start with '/'"):

        class Relative(HTTPService):
            @get(path="things")
            def things(self, request: object) -> None: ...


def test_a_route_declared_twice_is_rejected() -> None:
    with pytest.raises(ValueError, match="GET /x is declared twice"):

        class Twice(HTTPService):
            @get(path="/x")
            def one(self, request: object) -> None: ...

            @get(path=["/y", "/x"])
            def two(self, request: object) -> None: ...


def test_subclasses_inherit_and_replace_routes() -> None:
    class Base(HTTPService):
        @get(path="/a")
        def a(self, request: object) -> None: ...

        @get(path="/b")
        def b(self, request: object) -> None: ...

    class Child(Base):
        def a(self, request: object) -> None: ...  # undecorated override: keeps GET /a

        @post(path="/b2")
        def b(self, request: object) -> None: ...  # decorated override: replaces GET /b

    routes = collect(Child, RouteSpec)
    assert routes["a"] == (RouteSpec("GET", ("/a",)),)
    assert routes["b"] == (RouteSpec("POST", ("/b2",)),)


def test_a_route_method_may_not_take_a_name_vyked_uses() -> None:
    with pytest.raises(DefinitionError, match=r"HTTPService uses the name 'stats' itself"):

        class StatsClash(HTTPService):
            @get(path="/stats")
            def stats(self, request: object) -> None: ...

    with pytest.raises(DefinitionError, match=r"HTTPService uses the name 'start' itself"):

        class StartClash(HTTPService):
            @post(path="/start")
            def start(self, request: object) -> None: ...


@pytest.mark.parametrize("name", ["timeout", "host", "call", "bind", "resolve_host"])
def test_a_client_method_may_not_take_a_name_vyked_uses(name: str) -> None:
    def method(self: object) -> dict[str, Any]:
        path = "/x"
        return locals()

    method.__name__ = name
    with pytest.raises(DefinitionError, match=rf"Clash\.{name}: HTTPServiceClient uses the name '{name}' itself"):
        type("Clash", (HTTPServiceClient,), {name: get()(method)})


def test_a_client_may_replace_the_generic_request() -> None:
    class OwnRequest(HTTPServiceClient):
        @post()
        def request(self, body: str) -> dict[str, Any]:
            path = "/requests"
            return locals()

    assert routes_of(OwnRequest.request)[0].method == "POST"


def test_a_client_method_takes_one_verb_and_no_websocket() -> None:
    with pytest.raises(DefinitionError, match="a client method takes exactly one verb decorator"):

        class TwoVerbs(HTTPServiceClient):
            @put()
            @post()
            def save(self) -> dict[str, Any]:
                return locals()

    with pytest.raises(DefinitionError, match=r"Chat\.chat: @websocket declares a service endpoint"):

        class Chat(HTTPServiceClient):
            @websocket(path="/chat")
            def chat(self) -> dict[str, Any]:
                return locals()


def test_client_methods_become_senders_once() -> None:
    class Base(HTTPServiceClient):
        @get()
        def fetch(self) -> dict[str, Any]:
            """Fetch something."""
            path = "/x"
            return locals()

    class Child(Base):
        pass

    assert Child.fetch is Base.fetch  # not wrapped again
    assert Base.fetch.__name__ == "fetch"
    assert Base.fetch.__doc__ == "Fetch something."
    assert routes_of(Base.fetch) == (RouteSpec("GET", ()),)
