"""vyked on both event loops, asyncio's and uvloop's, over real sockets and real processes.

The whole suite runs on uvloop with ``VYKED_TEST_LOOP=uvloop`` (``nox -s tests_uvloop``); the
tests here also drive uvloop explicitly, so a plain run checks it too when it is installed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import ssl
import sys
from dataclasses import dataclass

import pytest

from vyked.core.exceptions import AuthenticationFailed, ConfigurationError, MissingExtra
from vyked.core.protocol.packets import Packet, Request, Response
from vyked.core.serving import loop_factory, run
from vyked.core.testing import ProcessRunner, free_port
from vyked.core.transport import Connection, PacketServer, open_connection

HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None
TEST_LOOP = os.environ.get("VYKED_TEST_LOOP", "").strip().lower() or "asyncio"
LOOPS = [
    "asyncio",
    pytest.param("uvloop", marks=pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop is not installed")),
]


@dataclass
class Tls:
    server: ssl.SSLContext
    client: ssl.SSLContext
    client_name: str


@pytest.fixture(scope="module")
def tls() -> Tls:
    """Mutual TLS: a CA, a server certificate for 127.0.0.1 and a client certificate."""
    trustme = pytest.importorskip("trustme", reason="the trustme package makes the test certificates")
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    ca.configure_trust(server)
    server.verify_mode = ssl.CERT_REQUIRED
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client)
    ca.issue_cert("orders.example").configure_cert(client)
    return Tls(server, client, "orders.example")


class Echo:
    """Answers every request with its params; remembers the connections it saw."""

    def __init__(self) -> None:
        self.connections: list[Connection] = []

    def packet_received(self, conn: Connection, packet: Packet) -> None:
        self.connections.append(conn)
        if isinstance(packet, Request):
            conn.send(Response(id=packet.id, result=packet.params))

    def connection_lost(self, conn: Connection, exc: BaseException | None) -> None:
        pass


class Answers:
    """The client side: the responses, in order."""

    def __init__(self) -> None:
        self.responses: asyncio.Queue[Response] = asyncio.Queue()

    def packet_received(self, conn: Connection, packet: Packet) -> None:
        if isinstance(packet, Response):
            self.responses.put_nowait(packet)

    def connection_lost(self, conn: Connection, exc: BaseException | None) -> None:
        pass


async def round_trip(tls: Tls | None) -> str:
    """Requests through a PacketServer and open_connection (over mutual TLS with ``tls``):
    small ones pipelined, and one frame larger than any single read; returns the running
    loop's module."""
    echo = Echo()
    server = PacketServer(echo, node_id="srv", ssl_context=tls.server if tls else None)
    _, port = await server.start("127.0.0.1", 0)
    try:
        answers = Answers()
        conn = await open_connection(
            "127.0.0.1", port, answers, node_id="cli", ssl_context=tls.client if tls else None, timeout=5
        )
        assert conn.ready and conn.peer_node_id == "srv"
        for i in range(100):
            conn.send(Request(id=i, service="S", endpoint="e", params={"i": i}))
        big = "x" * (3 * 1024 * 1024)
        conn.send(Request(id=100, service="S", endpoint="e", params={"big": big}))
        async with asyncio.timeout(10):
            got = [await answers.responses.get() for _ in range(101)]
        assert [r.result for r in got[:100]] == [{"i": i} for i in range(100)]
        assert got[100].result == {"big": big}
        served = echo.connections[0]
        assert served.peername[0] == "127.0.0.1" and conn.sockname[0] == "127.0.0.1"
        if tls is not None:
            certificate = served.peer_certificate
            assert certificate is not None
            assert ("DNS", tls.client_name) in certificate["subjectAltName"]
        conn.close()
        await conn.wait_closed()
    finally:
        await server.close()
    return type(asyncio.get_running_loop()).__module__


async def test_the_suite_runs_on_the_loop_it_was_asked_for() -> None:
    module = type(asyncio.get_running_loop()).__module__
    assert module.partition(".")[0] == TEST_LOOP, (module, TEST_LOOP)


async def test_round_trip_on_the_suites_loop() -> None:
    assert (await round_trip(None)).startswith(TEST_LOOP)


async def test_mutual_tls_round_trip_on_the_suites_loop(tls: Tls) -> None:
    assert (await round_trip(tls)).startswith(TEST_LOOP)


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("secure", [False, True], ids=["tcp", "tls"])
def test_round_trip_on_each_loop(loop: str, secure: bool, request: pytest.FixtureRequest) -> None:
    tls: Tls | None = request.getfixturevalue("tls") if secure else None
    assert run(round_trip(tls), loop=loop).startswith(loop)


async def refused(server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> BaseException:
    server = PacketServer(Echo(), node_id="srv", ssl_context=server_ssl)
    _, port = await server.start("127.0.0.1", 0)
    try:
        with pytest.raises(AuthenticationFailed) as info:
            await open_connection("127.0.0.1", port, Answers(), ssl_context=client_ssl, timeout=5)
        return info.value
    finally:
        await server.close()


@pytest.mark.parametrize("loop", LOOPS)
def test_tls_refusals_are_authentication_failures_on_each_loop(loop: str, tls: Tls) -> None:
    """uvloop has its own TLS implementation: its errors must map like asyncio's."""
    # the client does not trust the server's certificate
    run(refused(tls.server, ssl.create_default_context(ssl.Purpose.SERVER_AUTH)), loop=loop)
    # the server requires a client certificate the client does not have
    anonymous = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    anonymous.load_verify_locations(cadata=tls.client.get_ca_certs(binary_form=True)[0])
    run(refused(tls.server, anonymous), loop=loop)


# -- choosing the loop: VYKED_LOOP -------------------------------------------------------------


def test_asyncio_is_chosen_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    assert loop_factory("asyncio") is None
    monkeypatch.setenv("VYKED_LOOP", "asyncio")
    assert loop_factory() is None


def test_an_unknown_loop_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VYKED_LOOP", "trio")
    with pytest.raises(ConfigurationError, match="VYKED_LOOP='trio'.*auto, asyncio, uvloop"):
        loop_factory()


@pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop is not installed")
def test_auto_and_uvloop_pick_uvloop_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    uvloop = importlib.import_module("uvloop")
    monkeypatch.delenv("VYKED_LOOP", raising=False)
    assert loop_factory() is uvloop.new_event_loop
    assert loop_factory("uvloop") is uvloop.new_event_loop


def test_without_uvloop_auto_is_asyncio_and_uvloop_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # what an installation without it sees
    assert loop_factory("auto") is None
    with pytest.raises(MissingExtra, match=r"pip install 'vyked-core\[uvloop\]'"):
        loop_factory("uvloop")


def test_run_refuses_an_unknown_loop_before_starting_anything() -> None:
    async def main() -> None:
        raise AssertionError("never runs")

    with pytest.raises(ConfigurationError, match="trio"):
        run(main(), loop="trio")  # and the coroutine is closed: no "never awaited" warning


SERVER_SCRIPT = """
import asyncio
from vyked.core.serving import configure_logging, run_until_signalled

async def start():
    print("running on", type(asyncio.get_running_loop()).__module__, flush=True)

async def stop():
    print("stopped", flush=True)

configure_logging()
run_until_signalled(start, stop)
"""


def serve_and_stop(proc: ProcessRunner, ready: str) -> str:
    """Start, wait for ``ready``, SIGTERM, and return the whole output once it exited cleanly."""
    proc.start()
    try:
        proc.wait_for_output(ready)
        proc.send_signal(signal.SIGTERM)
        assert proc.process is not None
        assert proc.process.wait(10) == 0, proc.output()
        return proc.output()
    finally:
        proc.stop()


@pytest.mark.parametrize("loop", LOOPS)
def test_a_server_process_runs_on_the_loop_vyked_loop_names(loop: str) -> None:
    output = serve_and_stop(ProcessRunner("-c", SERVER_SCRIPT, env={"VYKED_LOOP": loop}), "running on")
    assert f"running on {loop}" in output
    assert f"serving on the {loop}" in output  # the log says which loop runs
    assert "stopped" in output and "Traceback" not in output


def test_a_server_process_defaults_to_uvloop_when_installed() -> None:
    env = {k: v for k, v in os.environ.items() if k != "VYKED_LOOP"}
    proc = ProcessRunner("-c", SERVER_SCRIPT)
    proc.env = env
    output = serve_and_stop(proc, "running on")
    assert f"running on {'uvloop' if HAVE_UVLOOP else 'asyncio'}" in output


@pytest.mark.skipif(importlib.util.find_spec("vyked.registry") is None, reason="vyked-registry is not installed")
@pytest.mark.parametrize("loop", LOOPS)
def test_registry_and_host_run_on_the_loop_vyked_loop_names(loop: str) -> None:
    """``vyked-registry`` and ``Host.run()``, each in its own process, serving each other."""
    port = free_port()
    registry = ProcessRunner("-m", "vyked.registry", "--port", str(port), env={"VYKED_LOOP": loop}).start()
    try:
        registry.wait_for_output(f"serving on the {loop}")
        script = f"from vyked import Host\nHost.registry_host = '127.0.0.1'\nHost.registry_port = {port}\nHost.run()\n"
        output = serve_and_stop(ProcessRunner("-c", script, env={"VYKED_LOOP": loop}), "serving on the")
        assert f"serving on the {loop}" in output and "host started" in output
        assert "Traceback" not in output + registry.output()
    finally:
        registry.stop()
