"""HTTPServiceClient through the real registry: what it sends, which instance gets it, what
comes back, and how it fails."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from vyked import (
    ConnectionLost,
    HostNotRunning,
    HTTPService,
    HTTPServiceClient,
    InvalidParams,
    Request,
    RequestTimeout,
    Response,
    ServiceUnavailable,
    delete,
    get,
    head,
    options,
    patch,
    post,
    put,
    trace,
)
from vyked.core.client import InstanceUnreachable
from vyked.core.service import Service
from vyked.core.service_host import ServiceHost
from vyked.core.testing import free_port
from vyked.http.client import APP_HEADER
from vyked.http.pool import POOL


class Mirror(HTTPService):
    """Answers every request with what it received, and which instance it is."""

    def __init__(self, name: str = "Mirror", version: object = 1) -> None:
        # /slow outlives the callers' timeouts; do not let it hold the shutdown for long
        super().__init__(name, version, "127.0.0.1", 0, shutdown_timeout=0.5)

    async def _mirror(self, request: Request) -> Response:
        body = await request.read()
        answer = {
            "node": self.node_id,
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "headers": {k: v for k, v in request.headers.items() if k.lower().startswith(("x-", "content-type"))},
            "cookies": dict(request.cookies),
            "body": body.decode(),
        }
        return Response(text=json.dumps(answer), content_type="application/json", headers={"X-Node": self.node_id})

    @get(path=["/echo/{tail:.*}", "/echo"])
    async def echo_get(self, request: Request) -> Response:
        return await self._mirror(request)

    @post(path="/echo")
    @put(path="/echo")
    @patch(path="/echo")
    @delete(path="/echo")
    @options(path="/echo")
    @trace(path="/echo")
    async def echo_other(self, request: Request) -> Response:
        return await self._mirror(request)

    @get(path="/slow")
    async def slow(self, request: Request) -> Response:
        await asyncio.sleep(5)
        return Response()

    @get(path="/teapot")
    def teapot(self, request: Request) -> Response:
        return Response(status=418, text="short and stout")

    @get(path="/broken-stream")
    async def broken_stream(self, request: Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"partial")
        raise RuntimeError("the source went away")


class MirrorClient(HTTPServiceClient):
    def __init__(self, version: object = 1, **kwargs: Any) -> None:
        super().__init__("Mirror", version, **kwargs)

    @get()
    def fetch(self, tail: str, entity: str | None = None) -> dict[str, Any]:
        path = f"/echo/{tail}"
        params = {"page": 2, "q": "x y"}
        headers = {"X-Trace": "t-1"}
        cookies = {"session": "abc"}
        app_name = "tests"
        return locals()

    @post()
    def create(self, payload: dict[str, Any]) -> dict[str, Any]:
        path = "/echo"
        json = payload
        return locals()

    @put()
    def replace(self, text: str) -> dict[str, Any]:
        path = "/echo"
        data = text.encode()
        headers = {"Content-Type": "text/plain"}
        return locals()

    @patch()
    def amend(self) -> dict[str, Any]:
        path = "/echo"
        json = {"op": "amend"}
        return locals()

    @delete()
    def remove(self) -> dict[str, Any]:
        path = "/echo"
        return locals()

    @head()
    def probe(self) -> dict[str, Any]:
        path = "/echo"
        return locals()

    @options()
    def describe(self) -> dict[str, Any]:
        path = "/echo"
        return locals()

    @trace()
    def loop_back(self) -> dict[str, Any]:
        path = "/echo"
        return locals()

    @get(path="/echo")
    def default_path(self) -> dict[str, Any]:
        return locals()

    @get(timeout=0.2)
    def slow(self) -> dict[str, Any]:
        path = "/slow"
        return locals()

    @get()
    def teapot(self) -> dict[str, Any]:
        path = "/teapot"
        return locals()

    @get(required_params=["q"])
    def search(self, params: Any) -> dict[str, Any]:
        path = "/echo"
        return locals()

    @get()
    async def async_style(self) -> dict[str, Any]:
        await asyncio.sleep(0)
        path = "/echo/async"
        return locals()

    @get()
    def generator_style(self) -> Any:
        yield from asyncio.sleep(0)
        path = "/echo/generator"
        return locals()

    @get()
    def broken_stream(self) -> dict[str, Any]:
        path = "/broken-stream"
        return locals()

    @get()
    def no_path(self) -> dict[str, Any]:
        return locals()

    @get()
    def relative(self) -> dict[str, Any]:
        path = "echo"
        return locals()

    @get()
    def not_a_dict(self) -> Any:
        return "/echo"


async def client_for(vyked_host: Any, *services: HTTPService, **kwargs: Any) -> MirrorClient:
    for service in services:
        await vyked_host(service)
    client = MirrorClient(**kwargs)
    await vyked_host(clients=(client,))
    return client


async def test_get_sends_path_params_headers_cookies_and_app_name(vyked_host: Any) -> None:
    client = await client_for(vyked_host, Mirror())
    response = await client.fetch("a/b")
    assert response.status == 200
    body = await response.json()
    assert body["method"] == "GET"
    assert body["path"] == "/echo/a/b"
    assert body["query"] == {"page": "2", "q": "x y"}
    assert body["headers"]["X-Trace"] == "t-1"
    assert body["headers"][APP_HEADER] == "tests"
    assert body["cookies"] == {"session": "abc"}
    assert "tail" not in body["query"]  # the method's own arguments are not sent


@pytest.mark.parametrize(
    ("call", "method", "body"),
    [
        ("create", "POST", '{"name": "ann"}'),
        ("replace", "PUT", "plain text"),
        ("amend", "PATCH", '{"op": "amend"}'),
        ("remove", "DELETE", ""),
        ("describe", "OPTIONS", ""),
        ("loop_back", "TRACE", ""),
    ],
)
async def test_each_verb(vyked_host: Any, call: str, method: str, body: str) -> None:
    client = await client_for(vyked_host, Mirror())
    args: dict[str, tuple[Any, ...]] = {"create": ({"name": "ann"},), "replace": ("plain text",)}
    response = await getattr(client, call)(*args.get(call, ()))
    answer = await response.json()
    assert answer["method"] == method
    assert answer["body"] == body


async def test_head(vyked_host: Any) -> None:
    client = await client_for(vyked_host, Mirror())
    response = await client.probe()
    assert response.status == 200
    assert response.headers["X-Node"]
    assert await response.read() == b""


async def test_the_response_stays_readable_after_the_call(vyked_host: Any) -> None:
    client = await client_for(vyked_host, Mirror())
    response = await client.teapot()
    assert response.status == 418  # error statuses are returned, not raised
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.connection is None  # the connection went back to the pool...
    assert await response.text() == "short and stout"  # ...and the body is still there
    assert await response.read() == b"short and stout"
    with pytest.raises(aiohttp.ClientResponseError):
        response.raise_for_status()


async def test_decorator_path_async_method_and_generic_request(vyked_host: Any) -> None:
    client = await client_for(vyked_host, Mirror())
    assert (await (await client.default_path()).json())["path"] == "/echo"
    assert (await (await client.async_style()).json())["path"] == "/echo/async"
    assert (await (await client.generator_style()).json())["path"] == "/echo/generator"
    response = await client.request("post", "/echo", json={"a": 1}, headers={"X-One": "1"}, app_name="generic")
    answer = await response.json()
    assert (answer["method"], answer["body"], answer["headers"]["X-One"]) == ("POST", '{"a": 1}', "1")
    assert answer["headers"][APP_HEADER] == "generic"


async def test_bad_method_dicts_fail_before_sending(vyked_host: Any) -> None:
    client = await client_for(vyked_host, Mirror())
    with pytest.raises(InvalidParams, match="needs a path"):
        await client.no_path()
    with pytest.raises(InvalidParams, match="starting with '/'"):
        await client.relative()
    with pytest.raises(TypeError, match=r"must return a dict \(return locals\(\)\), got str"):
        await client.not_a_dict()
    with pytest.raises(InvalidParams, match="missing required query parameters: q"):
        await client.search({"page": "1"})
    assert (await (await client.search({"q": "x"})).json())["query"] == {"q": "x"}
    assert (await (await client.search([("q", "pairs")])).json())["query"] == {"q": "pairs"}
    with pytest.raises(InvalidParams):
        await client.search([("page", "1")])


async def test_round_robin_across_two_instances(vyked_host: Any) -> None:
    first, second = Mirror(), Mirror()
    client = await client_for(vyked_host, first, second)
    nodes = [(await (await client.fetch("x")).json())["node"] for _ in range(6)]
    assert Counter(nodes) == {first.node_id: 3, second.node_id: 3}
    assert all(a != b for a, b in itertools.pairwise(nodes))  # alternating


async def test_entity_sticks_to_one_instance(vyked_host: Any) -> None:
    first, second = Mirror(), Mirror()
    client = await client_for(vyked_host, first, second)
    owners: dict[str, set[str]] = {}
    for round_ in range(3):
        for i in range(12):
            entity = f"user-{i}"
            response = await client.fetch(f"r{round_}", entity=entity)
            owners.setdefault(entity, set()).add(response.headers["X-Node"])
    assert all(len(nodes) == 1 for nodes in owners.values())  # same entity, same instance
    assert {node for nodes in owners.values() for node in nodes} == {first.node_id, second.node_id}


async def test_no_instance_is_service_unavailable_not_a_hang(vyked_host: Any) -> None:
    client = MirrorClient()
    await vyked_host(clients=(client,))
    async with asyncio.timeout(3):
        with pytest.raises(ServiceUnavailable, match="no live instance of 'Mirror'"):
            await client.fetch("x")


async def test_another_major_version_is_unavailable(vyked_host: Any) -> None:
    client = await client_for(vyked_host, Mirror(version="2.0"), version=1)
    with pytest.raises(ServiceUnavailable, match="registered: 2.0 \\(http\\)"):
        await client.fetch("x")


async def test_a_dead_instance_is_skipped_then_reported(vyked_host: Any) -> None:
    alive, dead = Mirror(), Mirror()
    client = await client_for(vyked_host, alive, dead)
    await dead.stop()  # stops listening but stays registered, as a crashed process would for a while
    nodes = {(await client.fetch(str(i))).headers["X-Node"] for i in range(6)}
    assert nodes == {alive.node_id}
    await alive.stop()
    with pytest.raises(ServiceUnavailable, match="2 registered, none usable now") as failure:
        await client.fetch("x")
    assert isinstance(failure.value.__cause__, InstanceUnreachable)
    assert isinstance(failure.value.__cause__.__cause__, aiohttp.ClientConnectorError)


class Unreachable(Mirror):
    """Registers as an instance of Mirror on a port where nothing listens."""

    async def start(self, host: ServiceHost) -> None:
        await Service.start(self, host)
        self.host_port = free_port()


async def test_a_refused_connection_fails_over_to_another_instance(vyked_host: Any) -> None:
    alive, refusing = Mirror(), Unreachable()
    client = await client_for(vyked_host, alive, refusing)
    assert client.host is not None
    directory = client.host.directory
    # an entity that rendezvous hashing assigns to the instance that refuses connections
    target = next(i for i in directory.instances("Mirror") if i.node_id == refusing.node_id)
    entity = next(
        e for e in map(str, itertools.count()) if directory.select("Mirror", client.version, "http", e) == target
    )
    async with asyncio.timeout(3):
        response = await client.fetch("over", entity=entity)
    assert response.status == 200
    assert response.headers["X-Node"] == alive.node_id
    assert directory.select("Mirror", client.version, "http", entity) != target  # marked unreachable
    # the refusing instance is skipped by the next requests, round-robin or not
    nodes = {(await client.fetch(str(i))).headers["X-Node"] for i in range(4)}
    assert nodes == {alive.node_id}


async def test_a_client_bound_to_a_host_never_started_refuses_to_call() -> None:
    host = ServiceHost("127.0.0.1:1", name="never-started")
    client = MirrorClient()
    host.bind_client(client)
    with pytest.raises(HostNotRunning, match="'never-started'.* has not been started"):
        await client.fetch("x")
    with pytest.raises(HostNotRunning, match="'never-started'"):
        await client.request("GET", "/echo")


async def test_a_slow_answer_is_a_request_timeout(vyked_host: Any) -> None:
    client = await client_for(vyked_host, Mirror())
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(RequestTimeout, match="within 0.2 s"):
        await client.slow()
    assert loop.time() - started < 2


async def test_a_connection_broken_mid_answer_is_connection_lost(vyked_host: Any) -> None:
    client = await client_for(vyked_host, Mirror())
    with pytest.raises(ConnectionLost, match="failed") as failure:
        await client.broken_stream()
    assert isinstance(failure.value.__cause__, aiohttp.ClientPayloadError)
    assert (await client.fetch("still-fine")).status == 200  # the pool recovers


async def test_the_client_wide_timeout_applies_without_a_decorator_timeout(vyked_host: Any) -> None:
    client = await client_for(vyked_host, Mirror(), timeout=0.2)
    with pytest.raises(RequestTimeout):
        await client.request("GET", "/slow")


async def test_one_session_per_host_closed_when_the_host_stops(vyked_registry: Any) -> None:
    service = Mirror()
    server_host = ServiceHost(f"127.0.0.1:{vyked_registry.port}")
    server_host.attach(service)
    await server_host.start()
    one, two = MirrorClient(), MirrorClient()
    client_host = ServiceHost(f"127.0.0.1:{vyked_registry.port}")
    client_host.bind_client(one)
    client_host.bind_client(two)
    await client_host.start()
    try:
        await one.fetch("a")
        await two.create({"b": 2})
        pool = client_host.extension(POOL)
        connector = pool.session.connector
        assert connector is not None
        assert sum(len(c) for c in connector._conns.values()) == 1  # both reused one keep-alive connection
    finally:
        await client_host.stop()
        await server_host.stop()
    assert pool.session.closed


async def test_clients_of_a_service_declared_as_dependencies(vyked_host: Any) -> None:
    class Front(HTTPService):
        def __init__(self) -> None:
            super().__init__("Front", 1)
            self.mirror = MirrorClient()
            self.clients = [self.mirror]

        @get(path="/relay/{word}")
        async def relay(self, request: Request) -> Response:
            upstream = await self.mirror.fetch(request.match_info["word"])
            return Response(text=(await upstream.json())["path"])

    await vyked_host(Mirror())
    front = Front()
    host = await vyked_host(front)
    assert front.mirror.host is host
    registration = front.registration("127.0.0.1")
    assert [d.service for d in registration.dependencies] == ["Mirror"]
    async with aiohttp.ClientSession() as http, http.get(f"{front.url}/relay/hello") as response:
        assert await response.text() == "/echo/hello"
