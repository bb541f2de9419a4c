"""Trust (issue 9): the cluster secret, TLS and service identity over real sockets and processes.

Registries and services run as their own processes where the issue asks for it, configured as
in production through ``VYKED_SECRET`` and ``VYKED_TLS_*``; rogues are processes or raw
sockets without the secret, with a wrong one, or with a certificate that should not pass.
Certificates are made per test module by :mod:`certs`. Each test prints its figures (run with
``-s``); the assertions hold them to hard bounds.
"""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from certs import CertificateAuthority, Credentials
from integration_support import registry_port, wait_for_line

from vyked import TCPServiceClient, request
from vyked.core.exceptions import (
    AuthenticationFailed,
    ConnectionLost,
    Overloaded,
    RegistryUnavailable,
    RequestTimeout,
)
from vyked.core.protocol.packets import (
    InstanceInfo,
    Packet,
    Register,
    Registered,
    StatusQuery,
    StatusReport,
)
from vyked.core.security import Trust, certificate_names
from vyked.core.service_host import ServiceHost
from vyked.core.testing import ProcessRunner, RawClient
from vyked.core.transport import Connection, open_connection
from vyked.registry import Registry
from vyked.registry.cli import fetch_status
from vyked.tcp import TCPService, api
from vyked.tcp.pool import POOL

HERE = Path(__file__).parent
WORKER = str(HERE / "trust_worker.py")
SECRET = "s3cret-of-the-cluster"
WRONG = "not-the-cluster-secret"
TRUST_VARIABLES = ("VYKED_SECRET", "VYKED_SECRET_FILE", "VYKED_TLS_CERT", "VYKED_TLS_KEY", "VYKED_TLS_CA")
REFUSAL_BOUND = 1.0
"""Seconds within which a refused peer must know it: at once, never a timeout."""


class WhoamiClient(TCPServiceClient):
    def __init__(self, name: str = "Calc", **kwargs: Any) -> None:
        super().__init__(name, 1, **kwargs)

    @request(timeout=10)
    def whoami(self) -> dict[str, Any]:
        return {}


class Named(TCPService):
    """An in-process service for the identity tests."""

    def __init__(self, name: str) -> None:
        super().__init__(name, 1, "127.0.0.1", 0)

    @api
    async def whoami(self) -> dict[str, Any]:
        return {"service": self.name}


class Answers:
    """A packet handler that keeps what arrives, for connections opened by hand."""

    def __init__(self) -> None:
        self.packets: asyncio.Queue[Packet] = asyncio.Queue()
        self.lost: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    def packet_received(self, conn: Connection, packet: Packet) -> None:
        self.packets.put_nowait(packet)

    def connection_lost(self, conn: Connection, exc: BaseException | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)

    async def next(self, kind: type[Packet], timeout: float = 5.0) -> Any:
        async with asyncio.timeout(timeout):
            while True:
                packet = await self.packets.get()
                if isinstance(packet, kind):
                    return packet


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def clean_trust_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither this process nor its children inherit trust settings from the caller's shell."""
    for variable in TRUST_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def spawn() -> Iterator[Callable[..., ProcessRunner]]:
    """``spawn(*args, env=...)``: start ``python ARGS`` with extra environment; all stopped after."""
    started: list[ProcessRunner] = []

    def start(*args: str, env: dict[str, str] | None = None) -> ProcessRunner:
        proc = ProcessRunner(*args, env=env).start()
        started.append(proc)
        return proc

    yield start
    for proc in reversed(started):
        proc.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A CA and what it issued, and a second CA with a certificate of its own."""
    directory = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority(directory / "ca")
    other = CertificateAuthority(directory / "other", "another CA")
    return {
        "ca": ca,
        "other_ca": other,
        "registry": ca.issue("registry"),
        "calc": ca.issue("calc-host", services=["Calc"]),
        "client": ca.issue("client"),
        "expired": ca.issue("calc-expired", services=["Calc"], expired=True),
        "foreign": other.issue("client"),
        "host_a": ca.issue("host-a", services=["A"]),
        "cn_a": ca.issue("A"),
    }


def tls_env(credentials: Credentials, ca: CertificateAuthority) -> dict[str, str]:
    return {
        "VYKED_TLS_CERT": str(credentials.cert),
        "VYKED_TLS_KEY": str(credentials.key),
        "VYKED_TLS_CA": str(ca.cert),
    }


async def start_registry(
    spawn: Callable[..., ProcessRunner], *flags: str, env: dict[str, str] | None = None
) -> tuple[ProcessRunner, int]:
    proc = spawn("-m", "vyked.registry", "--port", "0", *flags, env=env)
    return proc, await asyncio.to_thread(registry_port, proc)


async def line(proc: ProcessRunner, pattern: str, timeout: float = 30.0) -> re.Match[str]:
    return await asyncio.to_thread(wait_for_line, proc, pattern, timeout)


async def start_worker(
    spawn: Callable[..., ProcessRunner], registry: int, *args: str, env: dict[str, str] | None = None
) -> tuple[ProcessRunner, int, int]:
    """A legitimate Calc service process; returns it, its pid and its RPC port."""
    proc = spawn(WORKER, "--registry", f"127.0.0.1:{registry}", *args, env=env)
    ready = await line(proc, r"READY pid=(\d+) port=(\d+)")
    return proc, int(ready.group(1)), int(ready.group(2))


async def started_host(registry: int, *clients: TCPServiceClient, **trust: Any) -> ServiceHost:
    host = ServiceHost(f"127.0.0.1:{registry}", **trust)
    for client in clients:
        host.bind_client(client)
    await host.start()
    return host


def count_lines(proc: ProcessRunner, text: str) -> int:
    return sum(text in output_line for output_line in proc.output().splitlines())


async def settled_count(proc: ProcessRunner, text: str, expected: int, timeout: float = 5.0) -> int:
    """The number of ``proc``'s lines holding ``text``, once it reaches ``expected`` (or the
    deadline passes): a peer that refused us first logs our refusal of it a little later."""
    deadline = time.monotonic() + timeout
    while count_lines(proc, text) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)  # and no more arrive
    return count_lines(proc, text)


async def refused_within(what: Callable[[], Any], expected: type[BaseException] = AuthenticationFailed) -> float:
    """Run ``what()``; it must raise ``expected`` (never a timeout); returns the seconds it took."""
    started = time.monotonic()
    with pytest.raises(expected) as caught:
        await what()
    elapsed = time.monotonic() - started
    assert not isinstance(caught.value, (RequestTimeout, TimeoutError)), caught.value
    return elapsed


# -- a. a rogue without the secret cannot register as an existing service ------------------------


@pytest.mark.slow
async def test_rogue_without_the_secret_cannot_register_and_captures_no_call(
    spawn: Callable[..., ProcessRunner],
) -> None:
    cluster = {"VYKED_SECRET": SECRET}
    registry, port = await start_registry(spawn, env=cluster)
    _, legit_pid, legit_port = await start_worker(spawn, port, env=cluster)

    # a rogue process, without the secret, runs Calc too and tries to register it
    rogue = spawn(WORKER, "--registry", f"127.0.0.1:{port}", "--rogue")
    refused = await line(rogue, r"REFUSED (\w+) code=(\w+)")
    assert (refused.group(1), refused.group(2)) == ("AuthenticationFailed", "auth_failed")
    await line(rogue, r"LISTENING port=\d+")  # and it serves, unregistered

    # a raw rogue: hello without a nonce and a register for Calc in one write
    raw = await RawClient.connect(port, hello=False)
    raw_port = raw.writer.get_extra_info("sockname")[1]
    raw.send({"type": "hello", "protocol": 1, "node_id": "rogue"})
    info = {"service": "Calc", "version": "1", "host": "127.0.0.1", "port": 1, "node_id": "rogue-node"}
    raw.send({"type": "register", "instance": info})
    answer = await raw.receive()
    assert (answer["type"], answer["code"], answer.get("id")) == ("error", "auth_failed", None)
    assert await raw.closed_by_peer()
    await raw.close()

    # with a wrong secret, the rogue fails the same way
    wrong = Answers()
    with pytest.raises(AuthenticationFailed):
        await open_connection("127.0.0.1", port, wrong, secret=WRONG.encode())

    # a legitimate client: 100 calls, all to the legitimate instance
    client = WhoamiClient()
    host = await started_host(port, client, secret=SECRET)
    try:
        answers = [await client.whoami() for _ in range(100)]
        instances = host.directory.instances("Calc")
        report = await fetch_status("127.0.0.1", port, trust=Trust.configure(secret=SECRET))
    finally:
        await host.stop()
    to_rogue = sum(a["role"] == "rogue" for a in answers)
    rogue_calls = count_lines(rogue, "CALL ")
    raw_logged = await settled_count(registry, f"127.0.0.1:{raw_port}", 1)
    refusals_logged = await settled_count(registry, "closing connection with", 3)
    print(
        f"\n[trust a] rogue register: {refused.group(1)} ({refused.group(2)}); raw rogue: {answer['code']}; "
        f"calls reaching the rogue: {to_rogue} of {len(answers)} (rogue saw {rogue_calls}); "
        f"registry log lines for the raw rogue's address: {raw_logged}; refusals logged: {refusals_logged}"
    )
    assert to_rogue == 0 and rogue_calls == 0
    assert {a["pid"] for a in answers} == {legit_pid}
    assert [(i.host, i.port) for i in instances] == [("127.0.0.1", legit_port)]
    assert [s.instance.node_id for s in report.instances if s.instance.service == "Calc"] == [instances[0].node_id]
    assert raw_logged == 1  # the peer address, logged once
    assert refusals_logged == 3  # the rogue process, the raw rogue, the wrong secret: once each


# -- b. a rogue client calling an @api ------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("rogue_secret", [None, WRONG], ids=["no secret", "wrong secret"])
async def test_rogue_client_calling_an_api_is_refused_at_once(
    spawn: Callable[..., ProcessRunner], rogue_secret: str | None
) -> None:
    cluster = {"VYKED_SECRET": SECRET}
    _, port = await start_registry(spawn, env=cluster)
    service, _, service_port = await start_worker(spawn, port, env=cluster)

    # the rogue knows the service's address and feeds it to a registry of its own
    rogue_secret_bytes = rogue_secret.encode() if rogue_secret else None
    async with Registry("127.0.0.1", 0, secret=rogue_secret) as rogue_registry:
        feeder = Answers()
        conn = await open_connection("127.0.0.1", rogue_registry.port, feeder, secret=rogue_secret_bytes)
        info = InstanceInfo(service="Calc", version="1", host="127.0.0.1", port=service_port, node_id="stolen")
        conn.send(Register(instance=info))
        await feeder.next(Registered)
        client = WhoamiClient()
        host = await started_host(rogue_registry.port, client, secret=rogue_secret)
        try:
            times = []
            for _ in range(20):
                times.append(await refused_within(client.whoami))
        finally:
            await host.stop()
            conn.close()

    # the service is unharmed: a legitimate client is served
    legit = WhoamiClient()
    legit_host = await started_host(port, legit, secret=SECRET)
    try:
        assert (await legit.whoami())["role"] == "service"
    finally:
        await legit_host.stop()
    logged = await settled_count(service, "closing connection with", len(times))
    label = "wrong secret" if rogue_secret else "no secret"
    print(
        f"\n[trust b, {label}] rogue @api call: AuthenticationFailed in "
        f"{min(times) * 1000:.1f}-{max(times) * 1000:.1f} ms over {len(times)} calls; "
        f"service log lines about the rogue: {logged}; CALL lines: {count_lines(service, 'CALL ')}"
    )
    assert max(times) < REFUSAL_BOUND
    assert count_lines(service, "CALL ") == 1  # only the legitimate call
    assert logged == len(times)  # each refused connection once


# -- c. a rogue registry -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("registry_secret", [None, WRONG], ids=["no secret", "wrong secret"])
async def test_host_refuses_a_registry_that_does_not_know_the_secret(
    spawn: Callable[..., ProcessRunner], registry_secret: str | None
) -> None:
    env = {"VYKED_SECRET": registry_secret} if registry_secret else {}
    _, port = await start_registry(spawn, env=env)
    host = ServiceHost(f"127.0.0.1:{port}", secret=SECRET)
    host.attach(Named("Calc"))
    elapsed = await refused_within(host.start)
    assert host.stopped
    # and a host process configured by the environment fails the same way, before registering
    worker = spawn(WORKER, "--registry", f"127.0.0.1:{port}", env={"VYKED_SECRET": SECRET})
    refused = await line(worker, r"REFUSED (\w+) code=(\w+)")
    assert worker.process is not None
    exit_code = await asyncio.to_thread(worker.process.wait, 30)
    report = await fetch_status("127.0.0.1", port, trust=Trust.configure(secret=registry_secret))
    label = "a wrong secret" if registry_secret else "no secret"
    print(
        f"\n[trust c, registry with {label}] host start: "
        f"AuthenticationFailed in {elapsed * 1000:.1f} ms; host process: {refused.group(1)} "
        f"({refused.group(2)}), exit {exit_code}; registrations the rogue registry got: {len(report.instances)}"
    )
    assert elapsed < REFUSAL_BOUND
    assert (refused.group(1), refused.group(2), exit_code) == ("AuthenticationFailed", "auth_failed", 3)
    assert report.instances == []


# -- d. no secret anywhere -----------------------------------------------------------------------


@pytest.mark.slow
async def test_without_a_secret_anywhere_the_cluster_works_and_the_registry_says_it_is_open(
    spawn: Callable[..., ProcessRunner],
) -> None:
    registry, port = await start_registry(spawn)
    _, pid_1, _ = await start_worker(spawn, port)
    _, pid_2, _ = await start_worker(spawn, port)
    client = WhoamiClient()
    host = await started_host(port, client)
    try:
        answers = [await client.whoami() for _ in range(20)]
    finally:
        await host.stop()
    warnings = count_lines(registry, "no cluster secret is configured")
    print(f"\n[trust d] open cluster: {len(answers)} calls answered by {len({a['pid'] for a in answers})} "
          f"instances; 'no cluster secret' logged {warnings} time(s)")  # fmt: skip
    assert {a["pid"] for a in answers} == {pid_1, pid_2}
    assert warnings == 1


# -- e. TLS --------------------------------------------------------------------------------------


async def start_tls_cluster(
    spawn: Callable[..., ProcessRunner], pki: dict[str, Any], *worker_args: str
) -> tuple[ProcessRunner, int, ProcessRunner, int]:
    """A mutual-TLS registry process and a Calc process, both configured by ``VYKED_TLS_*``."""
    ca = pki["ca"]
    registry, port = await start_registry(spawn, env=tls_env(pki["registry"], ca))
    worker, _, service_port = await start_worker(spawn, port, *worker_args, env=tls_env(pki["calc"], ca))
    return registry, port, worker, service_port


@pytest.mark.slow
async def test_mutual_tls_calls_work_and_the_registry_records_tls(
    spawn: Callable[..., ProcessRunner], pki: dict[str, Any]
) -> None:
    registry, port, _, service_port = await start_tls_cluster(spawn, pki)
    assert "serving TLS with client certificates required" in registry.output()
    client = WhoamiClient()
    ca, mine = pki["ca"], pki["client"]
    host = await started_host(port, client, tls_cert=mine.cert, tls_key=mine.key, tls_ca=ca.cert)
    try:
        started = time.monotonic()
        answers = [await client.whoami() for _ in range(50)]
        per_call = (time.monotonic() - started) / len(answers)
        (instance,) = host.directory.instances("Calc")
        ic = next(iter(host.extension(POOL).connections.values()))
        assert ic.connection is not None
        rpc_cipher = ic.connection._transport.get_extra_info("cipher") if ic.connection._transport else None
        rpc_names = certificate_names(ic.connection.peer_certificate)
        registry_conn = host.registry.connection
        assert registry_conn is not None
        registry_names = certificate_names(registry_conn.peer_certificate)
        report = await fetch_status("127.0.0.1", port, trust=host.trust)
    finally:
        await host.stop()
    (status,) = report.instances
    print(
        f"\n[trust e] mutual TLS: {len(answers)} calls, {per_call * 1e6:.0f} us each; instance tls={instance.tls} "
        f"(status: {status.instance.tls}); RPC cipher {rpc_cipher and rpc_cipher[0]}; service certificate names "
        f"{sorted(rpc_names)}; registry certificate names {sorted(registry_names)}"
    )
    assert all(a["role"] == "service" for a in answers)
    assert instance.tls and status.instance.tls
    assert (instance.port, rpc_cipher is not None) == (service_port, True)
    assert "Calc" in rpc_names and "registry" in registry_names


@pytest.mark.slow
async def test_a_client_trusting_the_wrong_ca_is_refused(
    spawn: Callable[..., ProcessRunner], pki: dict[str, Any]
) -> None:
    _, port, _, _ = await start_tls_cluster(spawn, pki)
    foreign, other = pki["foreign"], pki["other_ca"]
    # trusting another CA (and holding a certificate from it): the registry does not check out
    host = ServiceHost(f"127.0.0.1:{port}", tls_cert=foreign.cert, tls_key=foreign.key, tls_ca=other.cert)
    registry_refusal = await refused_within(host.start)
    # a host that trusts the registry, with a client that trusts another CA for the service
    client = WhoamiClient(ssl_context=pki["client"].client_context(other.cert))
    mine = pki["client"]
    good_host = await started_host(port, client, tls_cert=mine.cert, tls_key=mine.key, tls_ca=pki["ca"].cert)
    try:
        service_refusal = await refused_within(client.whoami)
    finally:
        await good_host.stop()
    print(
        f"\n[trust e] wrong CA: registry connection refused in {registry_refusal * 1000:.1f} ms; "
        f"service connection refused in {service_refusal * 1000:.1f} ms (AuthenticationFailed)"
    )
    assert registry_refusal < REFUSAL_BOUND and service_refusal < REFUSAL_BOUND


@pytest.mark.slow
async def test_a_service_with_an_expired_certificate_is_refused_by_its_clients(
    spawn: Callable[..., ProcessRunner], pki: dict[str, Any]
) -> None:
    expired = pki["expired"]
    _, port, worker, _ = await start_tls_cluster(
        spawn, pki, "--serve-cert", str(expired.cert), "--serve-key", str(expired.key)
    )
    client = WhoamiClient()
    mine = pki["client"]
    host = await started_host(port, client, tls_cert=mine.cert, tls_key=mine.key, tls_ca=pki["ca"].cert)
    try:
        (instance,) = host.directory.instances("Calc")
        times = [await refused_within(client.whoami) for _ in range(5)]
        with pytest.raises(AuthenticationFailed) as caught:
            await client.whoami()
    finally:
        await host.stop()
    print(
        f"\n[trust e] expired service certificate: refused in {max(times) * 1000:.1f} ms at most "
        f"({len(times)} calls): {caught.value}"
    )
    assert instance.tls
    assert max(times) < REFUSAL_BOUND
    assert "expired" in str(caught.value)
    assert count_lines(worker, "CALL ") == 0


@pytest.mark.slow
@pytest.mark.parametrize("presents", ["no certificate", "a certificate from another CA"])
async def test_a_client_the_mutual_tls_registry_does_not_trust_is_refused_at_once(
    spawn: Callable[..., ProcessRunner], pki: dict[str, Any], presents: str
) -> None:
    _, port = await start_registry(spawn, env=tls_env(pki["registry"], pki["ca"]))
    # it trusts the registry's CA, so only the registry's check of the client can fail
    if presents == "no certificate":
        host = ServiceHost(f"127.0.0.1:{port}", tls_ca=pki["ca"].cert)
    else:
        foreign = pki["foreign"]
        host = ServiceHost(f"127.0.0.1:{port}", tls_cert=foreign.cert, tls_key=foreign.key, tls_ca=pki["ca"].cert)
    host.attach(Named("Calc"))
    started = time.monotonic()
    with pytest.raises((AuthenticationFailed, RegistryUnavailable)) as caught:
        await host.start()
    elapsed = time.monotonic() - started
    report = await fetch_status(
        "127.0.0.1",
        port,
        trust=Trust.configure(tls_cert=pki["client"].cert, tls_key=pki["client"].key, tls_ca=pki["ca"].cert),
    )
    print(
        f"\n[trust e] client with {presents} against a mutual-TLS registry: {type(caught.value).__name__} in "
        f"{elapsed * 1000:.1f} ms ({caught.value}); registrations: {len(report.instances)}"
    )
    assert report.instances == []
    assert elapsed < REFUSAL_BOUND
    assert isinstance(caught.value, AuthenticationFailed)  # not "no registry reachable"


@pytest.mark.slow
async def test_a_plaintext_client_against_a_tls_registry_fails_fast(
    spawn: Callable[..., ProcessRunner], pki: dict[str, Any]
) -> None:
    _, port = await start_registry(spawn, env=tls_env(pki["registry"], pki["ca"]))
    plain = ServiceHost(f"127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises((AuthenticationFailed, RegistryUnavailable)) as caught:
        await plain.start()
    elapsed = time.monotonic() - started
    print(
        f"\n[trust e] plaintext client against a TLS registry: {type(caught.value).__name__} in {elapsed * 1000:.1f} ms"
    )
    assert elapsed < REFUSAL_BOUND


# -- f. --require-identity -----------------------------------------------------------------------


@pytest.fixture
async def identity_registry(pki: dict[str, Any]) -> Any:
    registry_cert, ca = pki["registry"], pki["ca"]
    trust = Trust.configure(tls_cert=registry_cert.cert, tls_key=registry_cert.key, tls_ca=ca.cert)
    async with Registry("127.0.0.1", 0, trust=trust, require_identity=True) as registry:
        yield registry


def identity_host(registry: Any, credentials: Credentials, pki: dict[str, Any], service: str) -> ServiceHost:
    host = ServiceHost(
        f"127.0.0.1:{registry.port}", tls_cert=credentials.cert, tls_key=credentials.key, tls_ca=pki["ca"].cert
    )
    host.attach(Named(service))
    return host


async def test_require_identity_lets_a_host_register_only_the_services_its_certificate_names(
    identity_registry: Any, pki: dict[str, Any]
) -> None:
    port = identity_registry.port
    allowed = identity_host(identity_registry, pki["host_a"], pki, "A")
    await allowed.start()
    by_cn = identity_host(identity_registry, pki["cn_a"], pki, "A")  # CN=A, no SAN URI
    await by_cn.start()
    try:
        # the same certificate, another service: refused with auth_failed, over a raw connection
        handler = Answers()
        conn = await open_connection(
            "127.0.0.1",
            port,
            handler,
            ssl_context=pki["host_a"].client_context(pki["ca"].cert),
        )
        started = time.monotonic()
        conn.send(Register(instance=InstanceInfo(service="B", version="1", host="127.0.0.1", port=1, node_id="b")))
        async with asyncio.timeout(5):
            await handler.lost
        raw_elapsed = time.monotonic() - started
        refusal = conn.session.refusal
        client = WhoamiClient("A")
        caller = await started_host(
            port,
            client,
            tls_cert=pki["client"].cert,
            tls_key=pki["client"].key,
            tls_ca=pki["ca"].cert,
        )
        try:
            served = {(await client.whoami())["service"] for _ in range(4)}
            instances = caller.directory.instances("A")
        finally:
            await caller.stop()
        registered = {s.instance.service for s in identity_registry.state.status(lambda _: None)}
    finally:
        await allowed.stop()
        await by_cn.stop()
    print(
        f"\n[trust f] require-identity: A registered by SAN URI and by CN ({len(instances)} instances); "
        f"register B with a certificate naming A: {refusal and refusal.code} in {raw_elapsed * 1000:.1f} ms "
        f"({refusal and refusal.message}); registered: {sorted(registered)}"
    )
    assert refusal is not None and refusal.code == "auth_failed"
    assert raw_elapsed < REFUSAL_BOUND
    assert served == {"A"} and len(instances) == 2
    assert registered == {"A"}


async def test_require_identity_refuses_a_host_registering_another_service_at_once(
    identity_registry: Any, pki: dict[str, Any]
) -> None:
    impostor = identity_host(identity_registry, pki["host_a"], pki, "B")
    started = time.monotonic()
    with pytest.raises(AuthenticationFailed):  # at once: not RegistryUnavailable after an ack timeout
        await impostor.start()
    elapsed = time.monotonic() - started
    registered = {s.instance.service for s in identity_registry.state.status(lambda _: None)}
    print(f"\n[trust f] host registering B with a certificate naming A: refused in {elapsed * 1000:.1f} ms")
    assert elapsed < REFUSAL_BOUND
    assert registered == set()


# -- g. vyked-registry status ----------------------------------------------------------------------


def run_status(port: int, *flags: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "vyked.registry", "status", "--registry", f"127.0.0.1:{port}", *flags],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result, time.monotonic() - started


@pytest.mark.slow
async def test_registry_status_needs_the_secret(spawn: Callable[..., ProcessRunner], tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    wrong_file = tmp_path / "wrong"
    wrong_file.write_text(WRONG)
    _, port = await start_registry(spawn, "--secret-file", str(secret_file))
    await start_worker(spawn, port, env={"VYKED_SECRET": SECRET})
    without, without_s = await asyncio.to_thread(run_status, port)
    wrong, _ = await asyncio.to_thread(run_status, port, "--secret-file", str(wrong_file))
    right, right_s = await asyncio.to_thread(run_status, port, "--secret-file", str(secret_file))
    print(
        f"\n[trust g] status without the secret: exit {without.returncode} in {without_s:.2f} s: "
        f"{without.stderr.strip()!r}; wrong secret: exit {wrong.returncode}: {wrong.stderr.strip()!r}; "
        f"with --secret-file: exit {right.returncode} in {right_s:.2f} s"
    )
    for refused in (without, wrong):
        assert refused.returncode == 1
        assert "Traceback" not in refused.stderr
        assert "never retrieved" not in refused.stderr  # no stray asyncio noise after the clear line
        (message,) = [text for text in refused.stderr.splitlines() if text.startswith("vyked-registry status: ")]
        assert "secret" in message
        assert "Calc" not in refused.stdout
    assert right.returncode == 0, right.stderr
    assert "Calc" in right.stdout


# -- h. handshake timeout and connection cap ---------------------------------------------------------


async def closed_after(
    port: int, send: bytes = b"", drip: bool = False, pong: bool = False
) -> tuple[float, list[dict[str, Any]]]:
    """Connect, send ``send`` (one byte per 50 ms if ``drip``), answer pings if ``pong``, and
    wait for the peer to close; returns the seconds until it did and the packets it sent."""
    raw = await RawClient.connect(port, hello=False)
    started = time.monotonic()
    packets: list[dict[str, Any]] = []
    closed = asyncio.Event()

    async def dripping() -> None:
        for byte in send:
            if closed.is_set():
                return
            raw.send_bytes(bytes([byte]))
            await asyncio.sleep(0.05)

    dripper = asyncio.create_task(dripping()) if drip else None
    if not drip:
        raw.send_bytes(send)
    try:
        async with asyncio.timeout(15):
            while True:
                try:
                    packet = await raw.receive(timeout=15)
                except ConnectionLost:
                    break
                packets.append(packet)
                if pong and packet["type"] == "ping":
                    raw.send({"type": "pong", "nonce": packet.get("nonce", 0)})
    finally:
        closed.set()
        elapsed = time.monotonic() - started
        if dripper is not None:
            await dripper
        await raw.close()
    return elapsed, packets


async def test_a_connection_that_does_not_complete_the_handshake_is_closed_after_the_timeout() -> None:
    timeout = 0.3
    async with Registry("127.0.0.1", 0, handshake_timeout=timeout, secret=SECRET) as registry:
        silent, silent_packets = await closed_after(registry.port)
        hello = b'{"type":"hello","protocol":1,"nonce":"00112233445566778899aabbccddeeff"}'
        framed_hello = len(hello).to_bytes(4, "big") + hello
        stalled, stalled_packets = await closed_after(registry.port, framed_hello)  # hello, then no auth
        dripped, _ = await closed_after(registry.port, (10_000).to_bytes(4, "big") + b"x" * 200, drip=True)
        # a legitimate peer stays, well past the timeout
        handler = Answers()
        conn = await open_connection("127.0.0.1", registry.port, handler, secret=SECRET.encode())
        await asyncio.sleep(timeout * 4)
        still_open = not conn.closed
        conn.send(StatusQuery())
        await handler.next(StatusReport)
        conn.close()
    print(
        f"\n[trust h] handshake timeout {timeout} s: silent socket closed after {silent:.2f} s "
        f"({[p.get('code') for p in silent_packets]}); hello without auth closed after {stalled:.2f} s; "
        f"dripping socket closed after {dripped:.2f} s; authenticated peer still open: {still_open}"
    )
    for elapsed in (silent, stalled, dripped):
        assert timeout * 0.9 <= elapsed < timeout + 1.0
    assert [p.get("code") for p in silent_packets] == ["handshake_timeout"]
    assert [p["type"] for p in stalled_packets] == ["challenge", "error"]
    assert stalled_packets[-1]["code"] == "handshake_timeout"
    assert still_open


@pytest.mark.slow
async def test_a_tcp_service_closes_connections_that_never_complete_the_handshake() -> None:
    async with Registry("127.0.0.1", 0) as registry:
        service = Named("Calc")
        host = ServiceHost(f"127.0.0.1:{registry.port}")
        host.attach(service)
        await host.start()
        try:
            silent, _ = await closed_after(service.host_port)  # the heartbeat may close it first
            alive, alive_packets = await closed_after(service.host_port, pong=True)  # alive, but no hello
        finally:
            await host.stop()
    kinds = sorted({p["type"] for p in alive_packets})
    print(
        f"\n[trust h] TCP service: silent connection closed after {silent:.2f} s; one that answers pings but "
        f"never says hello closed after {alive:.2f} s ({kinds}, last {alive_packets[-1].get('code')})"
    )
    assert silent < 5.5
    assert 4.5 <= alive < 7.0  # the default handshake timeout, 5 s
    assert alive_packets[-1] == {"type": "error", "code": "handshake_timeout", "message": alive_packets[-1]["message"]}


async def test_a_non_ascii_proof_over_a_socket_gets_auth_failed_not_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with Registry("127.0.0.1", 0, secret=SECRET) as registry:
        raw = await RawClient.connect(registry.port, hello=False)
        raw.send({"type": "hello", "protocol": 1, "node_id": "rogue", "nonce": "00" * 16})
        challenge = await raw.receive()
        assert challenge["type"] == "challenge"
        raw.send({"type": "auth", "proof": "\u00e9" * 64})
        packets = []
        try:
            while True:
                packets.append(await raw.receive())
        except ConnectionLost:
            pass
        await raw.close()
        # the registry carries on
        handler = Answers()
        conn = await open_connection("127.0.0.1", registry.port, handler, secret=SECRET.encode())
        conn.send(StatusQuery())
        await handler.next(StatusReport)
        conn.close()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    print(
        f"\n[trust] non-ASCII auth proof: answered {[p.get('code') for p in packets]}; "
        f"ERROR records: {[r.getMessage() for r in errors]}"
    )
    assert [p.get("code") for p in packets] == ["auth_failed"]
    assert errors == []


async def test_over_the_connection_cap_a_new_connection_gets_overloaded_and_the_others_work() -> None:
    cap = 5
    async with Registry("127.0.0.1", 0, max_connections=cap) as registry:
        handlers = [Answers() for _ in range(cap)]
        conns = [await open_connection("127.0.0.1", registry.port, h) for h in handlers]
        raw = await RawClient.connect(registry.port, hello=False)
        raw.send({"type": "hello", "protocol": 1, "node_id": "sixth"})
        refusal = await raw.receive()
        closed = await raw.closed_by_peer()
        await raw.close()
        with pytest.raises(ConnectionLost) as caught:
            await open_connection("127.0.0.1", registry.port, Answers())
        for conn in conns:
            conn.send(StatusQuery())
        reports = [await h.next(StatusReport) for h in handlers]
        # one leaves: a new peer gets its place
        conns[0].close()
        await conns[0].wait_closed()
        async with asyncio.timeout(5):
            while len(registry._server.connections) >= cap:
                await asyncio.sleep(0.01)
        late = Answers()
        replacement = await open_connection("127.0.0.1", registry.port, late)
        replacement.send(StatusQuery())
        await late.next(StatusReport)
        for conn in [*conns[1:], replacement]:
            conn.close()
    print(
        f"\n[trust h] cap {cap}: connection {cap + 1} got {refusal['type']} {refusal['code']!r} "
        f"({refusal['message']!r}), closed: {closed}; open_connection: {type(caught.value).__name__} caused by "
        f"{type(caught.value.__cause__).__name__}; the first {cap} answered status: {len(reports)}"
    )
    assert (refusal["type"], refusal["code"]) == ("error", "overloaded")
    assert closed
    assert isinstance(caught.value.__cause__, Overloaded)
    assert len(reports) == cap
