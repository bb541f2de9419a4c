"""The public test kit (``vyked.testing`` and the ``vyked`` pytest plugin) where it needs
vyked-tcp, vyked-http or vyked-registry: client stubs, recording handlers of hosted services,
the plugin's fixtures in each pytest-asyncio mode, the registry as a process, and
``docs/testing.md`` matching the example suite it shows."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from integration_support import ROOT

from vyked import InvalidParams, RequestTimeout, ServiceUnavailable, TCPService, TCPServiceClient, api, request
from vyked.testing import ClientStub, HostFactory, RegistryProcess, record, started_hosts


class Accounts(TCPService):
    def __init__(self) -> None:
        super().__init__("Accounts", 1, "127.0.0.1", 0)
        self.threads: list[int] = []

    @api
    def open(self, owner: str, deposit: int = 0) -> dict[str, Any]:  # plain def: the thread pool
        self.threads.append(threading.get_ident())
        return {"owner": owner, "balance": deposit}


class AccountsClient(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__("Accounts", 1)

    @request
    def open(self, owner: str, deposit: int = 0) -> dict[str, Any]:
        return locals()

    @request(timeout=1)
    def close(self, owner: str) -> dict[str, Any]:
        return locals()


class SloppyAccountsClient(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__("Accounts", 1)

    @request
    def open(self, owner: str, colour: str) -> dict[str, Any]:
        return locals()


# -- ClientStub -----------------------------------------------------------------------------------


async def test_stub_answers_records_and_keeps_the_client() -> None:
    stub = ClientStub(AccountsClient, open={"balance": 0})
    client = stub.client
    assert isinstance(client, AccountsClient) and client.host is None

    first = await client.open("ann")
    first["balance"] = 99  # the next answer is a fresh copy
    assert await client.open("bob", deposit=5) == {"balance": 0}
    assert stub.calls == [("open", {"owner": "ann", "deposit": 0}), ("open", {"owner": "bob", "deposit": 5})]
    assert [c.result for c in stub.inbox("open")] == [{"balance": 99}, {"balance": 0}]
    assert client.host is None  # nothing was bound or started


async def test_stub_raises_given_errors_and_runs_given_functions() -> None:
    async def slow_open(owner: str, deposit: int) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"owner": owner.upper(), "balance": deposit}

    stub = ClientStub(AccountsClient(), open=slow_open, close=ServiceUnavailable("no instance of Accounts v1"))
    assert await stub.client.open("ann", 3) == {"owner": "ANN", "balance": 3}
    with pytest.raises(ServiceUnavailable, match="no instance"):
        await stub.client.close("ann")
    stub.answer("close", RequestTimeout)
    with pytest.raises(RequestTimeout):
        await stub.client.close("ann")
    stub.answer("open", lambda owner, deposit: {"owner": owner, "balance": deposit * 2})
    assert await stub.client.open("bob", 2) == {"owner": "bob", "balance": 4}
    assert isinstance(stub.inbox("close").calls[0].error, ServiceUnavailable)


async def test_stub_refuses_what_the_real_client_would_not_send() -> None:
    stub = ClientStub(AccountsClient)
    with pytest.raises(LookupError, match=r"AccountsClient.open\(\) has no canned answer"):
        await stub.client.open("ann")
    with pytest.raises(TypeError):
        stub.client.open()  # type: ignore[call-arg]  # missing owner, as the real client says
    with pytest.raises(TypeError, match="has no request method 'opne'"):
        ClientStub(AccountsClient, opne={})
    assert stub.calls == [("open", {"owner": "ann", "deposit": 0})]


async def test_stub_waits_for_a_call_made_in_the_background() -> None:
    stub = ClientStub(AccountsClient, open={"balance": 0})
    later = asyncio.get_running_loop().call_later(0.01, lambda: asyncio.ensure_future(stub.client.open("ann")))
    [call] = await stub.inbox("open").wait_for(1, timeout=5)
    assert call.kwargs == {"owner": "ann", "deposit": 0}
    later.cancel()


# -- record on hosted services -----------------------------------------------------------------


async def test_a_recorded_api_handler_still_runs_in_the_pool_and_checks_params(vyked_host: HostFactory) -> None:
    accounts = Accounts()
    opened = record(accounts, "open")
    await vyked_host(accounts)
    client = AccountsClient()
    await vyked_host(clients=(client,))

    assert await client.open("ann", deposit=7) == {"owner": "ann", "balance": 7}
    [call] = await opened.wait_for(1)
    assert call.kwargs == {"owner": "ann", "deposit": 7}
    assert accounts.threads[0] != threading.get_ident()

    sloppy = SloppyAccountsClient()
    await vyked_host(clients=(sloppy,))
    with pytest.raises(InvalidParams, match="colour"):  # checked against the handler's signature
        await sloppy.open("ann", colour="red")
    assert len(opened) == 1


# -- the plugin's fixtures in each pytest-asyncio mode ------------------------------------------

VYKED_SUITE = """
import aiohttp
import pytest

from vyked import Host, HTTPService, Request, Response, TCPService, TCPServiceClient, api, get, request
{marker}


class Echo(TCPService):
    def __init__(self):
        super().__init__("Echo", 1, "127.0.0.1", 0)

    @api
    async def echo(self, text):
        return text


class EchoClient(TCPServiceClient):
    def __init__(self):
        super().__init__("Echo", 1)

    @request
    def echo(self, text):
        return locals()


class Hello(HTTPService):
    def __init__(self):
        super().__init__("Hello", 1, "0.0.0.0", 4501)

    @get(path="/{{name}}")
    async def hello(self, request: Request) -> Response:
        return Response(text="hello " + request.match_info["name"])


async def test_call(vyked_host):
    await vyked_host(Echo())
    client = EchoClient()
    await vyked_host(clients=(client,))
    assert await client.echo("hi") == "hi"


async def test_http(vyked_http):
    url = await vyked_http(Hello())
    assert url.startswith("http://127.0.0.1:") and not url.endswith(":4501")
    async with aiohttp.ClientSession() as http, http.get(url + "/ann") as response:
        assert await response.text() == "hello ann"


@pytest.fixture(autouse=True)
def clean_host(vyked_clean_host):  # as docs/testing.md shows
    pass


async def test_dirty_host():
    Host.registry_port = 1
    Host.attach_service(Echo())


async def test_clean_host_again():
    assert Host.registry_port == 4500 and Host._tcp_service is None
"""


def run_child_pytest(directory: Path, ini: str, suite: str) -> subprocess.CompletedProcess[str]:
    (directory / "pytest.ini").write_text(textwrap.dedent(ini))
    (directory / "test_suite.py").write_text(textwrap.dedent(suite))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_") and k != "VYKED_TEST_LOOP"}
    command = [sys.executable, "-m", "pytest", "-q", "-W", "error", "-p", "no:cacheprovider", "-p", "no:randomly"]
    return subprocess.run(command, cwd=directory, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("mode", ["auto", "strict"])
def test_the_fixtures_work_in_each_pytest_asyncio_mode(tmp_path: Path, mode: str) -> None:
    marker = "pytestmark = pytest.mark.asyncio" if mode == "strict" else ""
    ini = f"""
        [pytest]
        asyncio_mode = {mode}
        asyncio_default_fixture_loop_scope = function
    """
    result = run_child_pytest(tmp_path, ini, VYKED_SUITE.format(marker=marker))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("4 passed")


# -- the registry as a process ------------------------------------------------------------------


async def test_a_registry_process_restarts_on_its_port(vyked_registry_process: RegistryProcess) -> None:
    registry = vyked_registry_process
    port = registry.port
    assert port > 0 and registry.address == f"127.0.0.1:{port}"
    async with started_hosts(registry.address) as make:
        accounts = Accounts()
        host = await make(accounts)
        since = registry.mark()
        await asyncio.to_thread(registry.restart, kill=True)
        assert registry.port == port and "listening" in registry.output()[since:]
        async with asyncio.timeout(10):  # the service host reconnects, and registers again at once
            while not host.registry.connected:
                await asyncio.sleep(0.01)
        client = AccountsClient()
        await make(clients=(client,))  # a new host learns of the instance from the new registry
        assert (await client.open("ann"))["owner"] == "ann"


# -- docs/testing.md shows the example suite as it is ---------------------------------------------

EXAMPLE = ROOT / "examples" / "testing"
DOC = ROOT / "docs" / "testing.md"
INCLUDED = re.compile(r"<!-- (examples/testing/[\w./]+) -->\n```python\n(.*?)```\n", re.S)


def test_the_doc_shows_every_example_file_verbatim() -> None:
    shown = dict(INCLUDED.findall(DOC.read_text()))
    files = {f"examples/testing/{p.name}": p.read_text() for p in sorted(EXAMPLE.glob("*.py"))}
    assert set(shown) == set(files)
    for name, code in files.items():
        assert shown[name] == code, f"docs/testing.md shows another {name}: copy the file into it"
