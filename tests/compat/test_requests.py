"""vyked 2.x request-response code against these packages, over real processes: a 2.x style
service (``user_service.py``) called the way 2.x clients called it."""

# ruff: noqa: UP008, UP032

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from compat_support import script, served_ports, wait_for_line

from vyked import (
    HTTPServiceClient,
    RemoteError,
    RequestException,
    ServiceHost,
    TCPServiceClient,
    get,
    request,
)
from vyked.core.testing import ProcessRunner

FAST = 5.0
"""Seconds within which a failing call must be answered (a ``@request`` waits 30 s)."""


class UserClient(TCPServiceClient):
    def __init__(self, name="UserService"):
        super(UserClient, self).__init__(name, 1)

    @request
    def create(self, user_name, password):
        app_name = "accounts"
        return locals()

    @request
    def create_blocking(self, user_name):
        return locals()

    @request
    def find(self, user_name):
        return locals()

    @request
    def crash(self):
        return locals()


class UserHTTPClient(HTTPServiceClient):
    def __init__(self):
        super(UserHTTPClient, self).__init__("UserService", 1)

    @get()
    def user(self, username):
        path = "/users/{}".format(username)
        params = {"key": "value"}
        headers = {"Content-Type": "application/json"}
        app_name = "test"
        return locals()


@pytest.fixture
def users(registry: int, start_process: Callable[..., ProcessRunner]) -> tuple[ProcessRunner, dict[str, int]]:
    """``user_service.py`` with metrics on; ``(process, {"tcp": port, "http": port, "metrics": port})``."""
    proc = start_process(
        script("user_service.py"),
        str(registry),
        env={"VYKED_METRICS_PORT": "0", "VYKED_METRICS_HOST": "127.0.0.1"},
    )
    ports = served_ports(proc, 2)
    ports["metrics"] = int(wait_for_line(proc, r"metrics and probes on http://127\.0\.0\.1:(\d+)").group(1))
    return proc, ports


@pytest.fixture
async def caller(registry: int) -> AsyncIterator[Callable[..., Any]]:
    """Start a host in this process with the given clients bound to it."""
    hosts: list[ServiceHost] = []

    async def start(*clients: Any) -> ServiceHost:
        host = ServiceHost(f"127.0.0.1:{registry}")
        for client in clients:
            host.bind_client(client)
        await host.start()
        hosts.append(host)
        return host

    yield start
    for host in hosts:
        await host.stop()


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return answer.read().decode()


async def test_base_exception_of_a_handler_reaches_the_caller_at_once(users: Any, caller: Any) -> None:
    proc, _ = users
    client = UserClient()
    await caller(client)
    for call in (lambda: client.create(None, "pw"), lambda: client.create_blocking(None)):
        started = time.monotonic()
        with pytest.raises(RemoteError) as raised:
            await call()
        assert time.monotonic() - started < FAST
        assert raised.value.remote_type.endswith("UserException")
        assert raised.value.message == "username cannot be none"
        assert not isinstance(raised.value, RequestException)
    # the service goes on serving, and never lost track of a task
    assert await client.create("ann", "pw") == "ann pw"
    assert "Task exception was never retrieved" not in proc.output()


async def test_vyked_service_exception_is_a_request_exception(users: Any, caller: Any) -> None:
    client = UserClient()
    await caller(client)
    with pytest.raises(RequestException) as raised:
        await client.find("nobody")
    assert isinstance(raised.value, RemoteError)
    assert raised.value.error == raised.value.message == "no user nobody"
    assert raised.value.remote_type.endswith("UserNotFound")

    with pytest.raises(RemoteError) as unhandled:
        await client.crash()
    assert not isinstance(unhandled.value, RequestException)
    assert unhandled.value.remote_type.endswith("VykedServiceError")
    assert unhandled.value.message == "the database is gone"


async def test_app_name_is_the_callers_name_not_a_parameter(users: Any, caller: Any) -> None:
    proc, ports = users
    client = UserClient()
    await caller(client)
    # create() takes no app_name: had it been sent as a parameter, this would be InvalidParams
    assert await client.create("ann", "pw") == "ann pw"
    assert re.search(
        r'vyked_server_requests_by_app_total\{app="accounts",endpoint="create",[^}]*\} 1\.0', metrics(ports["metrics"])
    )
    # and the service logs each calling application once
    await asyncio.to_thread(wait_for_line, proc, re.escape("first request from app 'accounts'"))
    assert "'accounts'" in proc.output()  # the service logs the names of its callers


async def test_service_names_match_whatever_their_case(users: Any, caller: Any) -> None:
    client = UserClient("userservice")  # 2.x lowercased every name: "UserService" was "userservice"
    await caller(client)
    assert await client.create("bob", "pw") == "bob pw"


async def test_http_client_sample_with_app_name(users: Any, caller: Any) -> None:
    _, ports = users
    client = UserHTTPClient()
    await caller(client)
    response = await client.user("bob")
    assert response.status == 200
    assert await response.text() == "Hello bob"
    assert re.search(r'vyked_server_requests_by_app_total\{[^}]*app="test"', metrics(ports["metrics"]))


async def test_http_handlers_of_the_2x_style(users: Any) -> None:
    proc, ports = users
    base = f"http://127.0.0.1:{ports['http']}"
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/users/ann", json={"password": "pw"}) as answer:
            assert answer.status == 200
            assert await answer.json(content_type=None) == {"password": "pw"}

        started = time.monotonic()
        async with session.get(f"{base}/broken") as answer:  # raises a BaseException subclass
            assert answer.status == 500
            assert (await answer.json())["type"] == "UserException"
        assert time.monotonic() - started < FAST

        preflight = {"Origin": "http://example.com", "Access-Control-Request-Method": "POST"}
        async with session.options(f"{base}/users/ann", headers=preflight) as answer:
            assert answer.status == 200
            assert answer.headers["Access-Control-Allow-Headers"] == "x-from-2x"
            assert answer.headers["Access-Control-Allow-Methods"] == "GET,POST"
    assert "Task exception was never retrieved" not in proc.output()
