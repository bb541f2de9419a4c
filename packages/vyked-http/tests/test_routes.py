"""Declared routes, served over real sockets: verbs, path lists, path parameters, required
query parameters and the three handler styles."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from vyked import HTTPService, Request, Response, delete, get, head, options, patch, post, put, trace
from vyked.http.service import HTTPService as HTTPServiceClass

Serve = Callable[[Any], Awaitable[Any]]

VERBS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE"]


class Verbs(HTTPService):
    def __init__(self) -> None:
        super().__init__("Verbs", 1)

    def _answer(self, request: Request, name: str) -> Response:
        return Response(text=f"{name}:{request.method}", headers={"X-Handler": name})

    @get(path="/thing")
    async def do_get(self, request: Request) -> Response:
        return self._answer(request, "do_get")

    @post(path="/thing")
    async def do_post(self, request: Request) -> Response:
        return self._answer(request, "do_post")

    @put(path="/thing")
    async def do_put(self, request: Request) -> Response:
        return self._answer(request, "do_put")

    @patch(path="/thing")
    async def do_patch(self, request: Request) -> Response:
        return self._answer(request, "do_patch")

    @delete(path="/thing")
    async def do_delete(self, request: Request) -> Response:
        return self._answer(request, "do_delete")

    @head(path="/thing")
    async def do_head(self, request: Request) -> Response:
        return self._answer(request, "do_head")

    @options(path="/thing")
    async def do_options(self, request: Request) -> Response:
        return self._answer(request, "do_options")

    @trace(path="/thing")
    async def do_trace(self, request: Request) -> Response:
        return self._answer(request, "do_trace")


@pytest.mark.parametrize("verb", VERBS)
async def test_each_verb_reaches_its_handler(serve: Serve, http: aiohttp.ClientSession, verb: str) -> None:
    service = await serve(Verbs())
    async with http.request(verb, f"{service.url}/thing") as response:
        assert response.status == 200
        assert response.headers["X-Handler"] == f"do_{verb.lower()}"
        body = await response.text()
    assert body == ("" if verb == "HEAD" else f"do_{verb.lower()}:{verb}")


async def test_unknown_method_and_path(serve: Serve, http: aiohttp.ClientSession) -> None:
    class OnlyGet(HTTPService):
        @get(path="/only")
        def only(self, request: Request) -> Response:
            return Response(text="ok")

    service = await serve(OnlyGet("OnlyGet", 1))
    async with http.post(f"{service.url}/only") as response:
        assert response.status == 405
    async with http.get(f"{service.url}/nowhere") as response:
        assert response.status == 404


class Paths(HTTPService):
    def __init__(self) -> None:
        super().__init__("Paths", "1.2", "127.0.0.1", 0)

    @get(path=["/one", "/two", "/nested/three"])
    def many(self, request: Request) -> Response:
        return Response(text=request.path)

    @get(path=r"/users/{name}/items/{item_id:\d+}")
    def item(self, request: Request) -> Response:
        info = request.match_info
        return Response(text=f"{info['name']}/{int(info['item_id']) + 1}")

    @get(path="/search", required_params=["q", "page"])
    def search(self, request: Request) -> Response:
        return Response(text=f"{request.query['q']}@{request.query['page']}")


async def test_a_path_list_serves_every_path(serve: Serve, http: aiohttp.ClientSession) -> None:
    service = await serve(Paths())
    for path in ("/one", "/two", "/nested/three"):
        async with http.get(service.url + path) as response:
            assert response.status == 200
            assert await response.text() == path
    assert service.stats.endpoints["many"].requests == 3


async def test_path_parameters(serve: Serve, http: aiohttp.ClientSession) -> None:
    service = await serve(Paths())
    async with http.get(f"{service.url}/users/ann%20lee/items/41") as response:
        assert await response.text() == "ann lee/42"
    async with http.get(f"{service.url}/users/ann/items/forty") as response:
        assert response.status == 404  # the pattern wants digits


async def test_required_params(serve: Serve, http: aiohttp.ClientSession) -> None:
    service = await serve(Paths())
    async with http.get(f"{service.url}/search") as response:
        assert response.status == 400
        assert response.content_type == "application/json"
        body = await response.json()
    assert body["error"] == "invalid_params"
    assert body["missing"] == ["q", "page"]
    assert "q, page" in body["message"]

    async with http.get(f"{service.url}/search", params={"page": "2"}) as response:
        assert response.status == 400
        assert (await response.json())["missing"] == ["q"]

    async with http.get(f"{service.url}/search", params={"q": "vyked", "page": "2"}) as response:
        assert response.status == 200
        assert await response.text() == "vyked@2"


class Styles(HTTPService):
    def __init__(self) -> None:
        super().__init__("Styles", 1)

    @post(path="/async")
    async def coroutine_style(self, request: Request) -> Response:
        data = await request.json()
        await asyncio.sleep(0)
        return Response(text=json.dumps({"style": "async", **data}))

    @post(path="/def")
    def plain_style(self, request: Request) -> Response:
        return Response(text=json.dumps({"style": "def", "length": request.content_length}))

    @post(path="/generator")
    def generator_style(self, request: Request) -> Any:
        data = yield from request.json()
        yield from asyncio.sleep(0)
        return Response(text=json.dumps({"style": "generator", **data}))


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/async", {"style": "async", "n": 1}),
        ("/def", {"style": "def", "length": 8}),
        ("/generator", {"style": "generator", "n": 1}),
    ],
)
async def test_handler_styles(serve: Serve, http: aiohttp.ClientSession, path: str, expected: dict[str, Any]) -> None:
    service = await serve(Styles())
    async with http.post(service.url + path, json={"n": 1}) as response:
        assert response.status == 200
        assert json.loads(await response.text()) == expected


async def test_get_answers_head_unless_head_is_declared(serve: Serve, http: aiohttp.ClientSession) -> None:
    class Heads(HTTPService):
        @get(path="/implicit")
        def implicit(self, request: Request) -> Response:
            return Response(text="body", headers={"X-From": "get"})

        @get(path="/explicit")
        def explicit_get(self, request: Request) -> Response:
            return Response(text="body", headers={"X-From": "get"})

        @head(path="/explicit")
        def explicit_head(self, request: Request) -> Response:
            return Response(headers={"X-From": "head"})

    service = await serve(Heads("Heads", 1))
    async with http.head(f"{service.url}/implicit") as response:
        assert response.status == 200
        assert response.headers["X-From"] == "get"
        assert await response.read() == b""
    async with http.head(f"{service.url}/explicit") as response:
        assert response.headers["X-From"] == "head"


async def test_stacked_verbs_share_one_handler(serve: Serve, http: aiohttp.ClientSession) -> None:
    class Stacked(HTTPService):
        @put(path="/doc")
        @post(path="/doc")
        async def save(self, request: Request) -> Response:
            return Response(text=request.method)

    service = await serve(Stacked("Stacked", 1))
    for verb in ("POST", "PUT"):
        async with http.request(verb, f"{service.url}/doc") as response:
            assert await response.text() == verb
    assert service.stats.endpoints["save"].requests == 2


async def test_an_undecorated_override_serves_the_inherited_route(serve: Serve, http: aiohttp.ClientSession) -> None:
    class Base(HTTPService):
        @get(path="/greeting")
        def greeting(self, request: Request) -> Response:
            return Response(text="base")

    class Child(Base):
        def greeting(self, request: Request) -> Response:
            return Response(text="child")

    service = await serve(Child("Child", 1))
    async with http.get(f"{service.url}/greeting") as response:
        assert await response.text() == "child"


async def test_port_zero_binds_a_free_port_and_stop_releases_it(http: aiohttp.ClientSession) -> None:
    from vyked.core.host import ServiceHost

    service = Verbs()
    await service.start(ServiceHost())
    assert service.host_port != 0
    url = f"{service.url}/thing"
    async with http.get(url) as response:
        assert response.status == 200
    await service.stop()
    with pytest.raises(aiohttp.ClientConnectorError):
        async with http.get(url):
            pass


def test_kind_is_http() -> None:
    assert HTTPServiceClass.kind == "http"
    assert Verbs().registration("127.0.0.1").instance.kind == "http"


class Lingering(HTTPService):
    def __init__(self, shutdown_timeout: float) -> None:
        super().__init__("Lingering", 1, shutdown_timeout=shutdown_timeout)
        self.outcomes: list[str] = []
        self.working = asyncio.Event()
        """Set once a request is in the handler."""

    @get(path="/work/{seconds}")
    async def work(self, request: Request) -> Response:
        self.working.set()
        try:
            await asyncio.sleep(float(request.match_info["seconds"]))
        except asyncio.CancelledError:
            self.outcomes.append("cancelled")
            raise
        self.outcomes.append("finished")
        return Response(text="done")


async def test_stop_lets_requests_in_flight_finish(http: aiohttp.ClientSession) -> None:
    from vyked.core.host import ServiceHost

    service = Lingering(shutdown_timeout=5)
    await service.start(ServiceHost())
    in_flight = asyncio.ensure_future(http.get(f"{service.url}/work/0.3"))
    await asyncio.wait_for(service.working.wait(), 10)
    await service.stop()
    async with await in_flight as response:
        assert response.status == 200
        assert await response.text() == "done"
    assert service.outcomes == ["finished"]


async def test_stop_cancels_what_outlives_the_shutdown_timeout(http: aiohttp.ClientSession) -> None:
    from vyked.core.host import ServiceHost

    service = Lingering(shutdown_timeout=0.2)
    await service.start(ServiceHost())
    in_flight = asyncio.ensure_future(http.get(f"{service.url}/work/30"))
    await asyncio.wait_for(service.working.wait(), 10)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await service.stop()
    assert loop.time() - started < 2
    assert service.outcomes == ["cancelled"]
    with pytest.raises(aiohttp.ClientError):
        await in_flight
