"""What trust costs: RPC over TLS, the cluster secret, and new connections per second.

The servers run in a child process (``python bench/bench_trust.py --serve CERT KEY CA``,
printing its ports); this process runs the clients, so client and server do not share a core.
The certificates are made at start with ``trustme``: a CA and one ECDSA certificate for
127.0.0.1. Every TLS connection here is **mutual** TLS, because that is what a cluster gets
from ``ServiceHost(tls_cert=, tls_key=, tls_ca=)`` with a private CA; the raw baselines use the
very same contexts (``vyked.core.security.server_context`` / ``client_context``).

1. RPC over TLS: vyked (a TCPService echo ``@api``, the client through a TLS registry) against
   bench_rpc's raw asyncio framed JSON echo over ``ssl=``; sequential p50 / p99 and pipelined
   x100 throughput.
2. Plaintext RPC in a cluster with a secret against one without, measured alike: the secret
   is proven once per connection, so the ratio should be ~100%.
3. New connections per second (connect, handshake, close; sequentially and 50 at a time):
   raw TCP, the vyked handshake, the authenticated handshake, raw TLS and vyked over TLS,
   against ``PacketServer``s in the child, through ``open_connection``.

Run: ``python bench/bench_trust.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import trustme
from bench_rpc import EchoClient, EchoService, RawEchoClient, RawEchoServer, percentile, pipelined, sequential
from server_process import server_process

from vyked import ServiceHost
from vyked.core.protocol.packets import Packet
from vyked.core.security import client_context, server_context
from vyked.core.transport.connection import Connection, PacketServer, open_connection

SECRET = b"bench-cluster-secret"
HOST = "127.0.0.1"

Call = Callable[[int], Awaitable[Any]]
RPC_ROWS = (("sequential p50 (us)", "p50"), ("sequential p99 (us)", "p99"), ("pipelined x100 (req/s)", "rps"))


# -- certificates and the server process -------------------------------------------------------


def make_certificates(directory: Path) -> tuple[str, str, str]:
    """A CA and a certificate for 127.0.0.1 (usable as server and client certificate);
    returns the paths ``(cert, key, ca)``."""
    ca = trustme.CA()
    leaf = ca.issue_cert(HOST)
    cert, key, ca_path = directory / "cert.pem", directory / "key.pem", directory / "ca.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    for pem in leaf.cert_chain_pems[1:]:
        pem.write_to_path(str(cert), append=True)
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_path))
    return str(cert), str(key), str(ca_path)


class Ignore:
    """A PacketServer handler that does nothing: only the handshake is measured."""

    def packet_received(self, conn: Connection, packet: Packet) -> None:
        pass

    def connection_lost(self, conn: Connection, exc: BaseException | None) -> None:
        pass


class Silent(asyncio.Protocol):
    """A raw connection that does nothing but tell when it is closed."""

    def __init__(self) -> None:
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def serve(cert: str, key: str, ca: str) -> None:
    from vyked.registry import Registry

    loop = asyncio.get_running_loop()
    tls = server_context(cert, key, ca)
    ports: list[int] = []

    # 1. RPC over TLS: the raw echo, and a TLS registry with a TLS echo service
    raw_tls = await loop.create_server(RawEchoServer, HOST, 0, ssl=tls)
    ports.append(raw_tls.sockets[0].getsockname()[1])
    registries: list[Registry] = []
    hosts: list[ServiceHost] = []
    clusters: list[tuple[Registry, dict[str, Any]]] = [
        (Registry(HOST, 0, ssl_context=tls), {"tls_cert": cert, "tls_key": key, "tls_ca": ca}),
        (Registry(HOST, 0), {}),  # 2. plaintext, no secret
        (Registry(HOST, 0, secret=SECRET), {"secret": SECRET}),  # 2. plaintext, with the secret
    ]
    for registry, host_settings in clusters:
        await registry.open()
        host = ServiceHost(f"{HOST}:{registry.port}", **host_settings)
        host.attach(EchoService())
        await host.start()
        registries.append(registry)
        hosts.append(host)
        ports.append(registry.port)

    # 3. new connections: raw TCP, raw TLS, and packet servers without a secret, with, over TLS
    raw_servers = [await loop.create_server(Silent, HOST, 0, ssl=context) for context in (None, tls)]
    ports += [server.sockets[0].getsockname()[1] for server in raw_servers]
    packet_servers = [
        PacketServer(Ignore(), node_id="bench"),
        PacketServer(Ignore(), node_id="bench", secret=SECRET),
        PacketServer(Ignore(), node_id="bench", ssl_context=tls),
    ]
    for packet_server in packet_servers:
        ports.append((await packet_server.start(HOST, 0))[1])

    print(*ports, flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin
    for packet_server in packet_servers:
        await packet_server.close()
    for server in [raw_tls, *raw_servers]:
        server.close()
    for host in hosts:
        await host.stop()
    for registry in registries:
        await registry.close()


# -- 1 and 2: round trips ------------------------------------------------------------------------


async def vyked_echo(registry_port: int, **settings: Any) -> tuple[ServiceHost, Call]:
    host = ServiceHost(f"{HOST}:{registry_port}", **settings)
    client = EchoClient()
    host.bind_client(client)
    await host.start()

    def call(i: int) -> Awaitable[Any]:
        return cast("Awaitable[Any]", client.echo(i, "bench"))  # @request makes the call awaitable

    return host, call


async def compare_rpc(calls: dict[str, Call], n_seq: int, n_pipe: int, rounds: int) -> dict[str, dict[str, float]]:
    """Best p50, p99 (seconds) and pipelined requests/s of each call, rounds interleaved."""
    for call in calls.values():
        assert await call(1) == {"x": 1, "name": "bench"}
        await sequential(call, 500)  # warm up
        await pipelined(call, 5000)
    results: dict[str, dict[str, list[float]]] = {name: {"p50": [], "p99": [], "rps": []} for name in calls}
    for round_ in range(rounds):  # short rounds interleaved, in alternating order: drift hits all alike
        for name, call in list(calls.items())[:: 1 if round_ % 2 == 0 else -1]:
            latencies = await sequential(call, n_seq)
            results[name]["p50"].append(percentile(latencies, 50))
            results[name]["p99"].append(percentile(latencies, 99))
            results[name]["rps"].append(await pipelined(call, n_pipe))
    return {name: {"p50": min(r["p50"]), "p99": min(r["p99"]), "rps": max(r["rps"])} for name, r in results.items()}


def print_rpc(title: str, columns: tuple[str, str], best: dict[str, dict[str, float]], targets: list[str]) -> None:
    base, other = best[columns[0]], best[columns[1]]
    print(f"\n{title}")
    print(f"{'':28}{columns[0]:>16}{columns[1]:>16}{'ratio':>10}   target")
    for (label, key), target in zip(RPC_ROWS, targets, strict=True):
        ratio = other[key] / base[key]
        if key == "rps":
            print(f"{label:28}{base[key]:16,.0f}{other[key]:16,.0f}{ratio:9.0%}    {target}")
        else:
            print(f"{label:28}{base[key] * 1e6:16.1f}{other[key] * 1e6:16.1f}{ratio:9.2f}x   {target}")


# -- 3: new connections ----------------------------------------------------------------------------


async def raw_connect(port: int, ssl_context: ssl.SSLContext | None) -> None:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_connection(
        Silent, HOST, port, ssl=ssl_context, server_hostname=HOST if ssl_context is not None else None
    )
    transport.close()
    await protocol.closed


async def vyked_connect(port: int, secret: bytes | None, ssl_context: ssl.SSLContext | None) -> None:
    conn = await open_connection(HOST, port, Ignore(), node_id="bench", secret=secret, ssl_context=ssl_context)
    conn.close()
    await conn.wait_closed()


async def connections_per_second(connect: Callable[[], Awaitable[None]], n: int, at_once: int) -> float:
    per_worker = n // at_once

    async def worker() -> None:
        for _ in range(per_worker):
            await connect()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(at_once)))
    return per_worker * at_once / (time.perf_counter() - started)


# -- the run ---------------------------------------------------------------------------------------


async def measure(ports: list[int], certs: tuple[str, str, str], args: argparse.Namespace) -> None:
    raw_tls_port, registry_tls, registry_open, registry_secret, *connect_ports = ports
    cert, key, ca = certs
    tls_client = client_context(ca, cert, key)
    loop = asyncio.get_running_loop()

    # 1. RPC over TLS
    raw_transport, raw = await loop.create_connection(RawEchoClient, HOST, raw_tls_port, ssl=tls_client)

    def raw_call(i: int) -> Awaitable[Any]:
        return raw.echo({"x": i, "name": "bench"})

    tls_host, tls_call = await vyked_echo(registry_tls, tls_cert=cert, tls_key=key, tls_ca=ca)
    best = await compare_rpc(
        {"raw asyncio TLS": raw_call, "vyked TLS": tls_call}, args.sequential, args.pipelined, args.rounds
    )
    await tls_host.stop()
    raw_transport.close()
    print_rpc(
        f"RPC over mutual TLS, one loopback connection (best of {args.rounds} rounds)",
        ("raw asyncio TLS", "vyked TLS"),
        best,
        ["<= 2x", "", ">= 50%"],
    )

    # 2. plaintext RPC, with a secret and without
    open_host, open_call = await vyked_echo(registry_open)
    secret_host, secret_call = await vyked_echo(registry_secret, secret=SECRET)
    best = await compare_rpc(
        {"no secret": open_call, "secret": secret_call}, args.sequential, args.pipelined, args.rounds
    )
    await open_host.stop()
    await secret_host.stop()
    print_rpc(
        f"Plaintext vyked RPC, cluster secret set vs not (best of {args.rounds} rounds)",
        ("no secret", "secret"),
        best,
        ["~1.00x", "", "~100%"],
    )

    # 3. new connections per second
    raw_tcp, raw_tls, vyked_open, vyked_secret, vyked_tls = connect_ports
    kinds: dict[str, Callable[[], Awaitable[None]]] = {
        "raw TCP": lambda: raw_connect(raw_tcp, None),
        "vyked handshake": lambda: vyked_connect(vyked_open, None, None),
        "vyked + secret": lambda: vyked_connect(vyked_secret, SECRET, None),
        "raw TLS (mutual)": lambda: raw_connect(raw_tls, tls_client),
        "vyked over TLS (mutual)": lambda: vyked_connect(vyked_tls, None, tls_client),
    }
    modes = {"sequential": 1, f"{args.at_once} at a time": args.at_once}
    count = {kind: args.tls_connections if "TLS" in kind else args.connections for kind in kinds}
    for kind, connect in kinds.items():  # warm up
        await connections_per_second(connect, count[kind] // 10, 1)
    rates: dict[tuple[str, str], list[float]] = {(k, m): [] for k in kinds for m in modes}
    for round_ in range(args.connection_rounds):
        for kind, connect in list(kinds.items())[:: 1 if round_ % 2 == 0 else -1]:
            for mode, at_once in modes.items():
                rates[kind, mode].append(await connections_per_second(connect, count[kind], at_once))
    rate = {pair: max(values) for pair, values in rates.items()}

    # each kind against the fastest honest baseline for it, and its target (on the sequential rate)
    baselines = {
        "vyked handshake": ("raw TCP", ""),
        "vyked + secret": ("vyked handshake", ">= 50%"),
        "vyked over TLS (mutual)": ("raw TLS (mutual)", ">= 50%"),
    }
    mode_names = list(modes)
    print(
        f"\nNew connections per second: connect, handshake, close (best of {args.connection_rounds} rounds of "
        f"{args.connections:,} connections, {args.tls_connections:,} over TLS)"
    )
    print(f"{'':26}{mode_names[0]:>12}{mode_names[1]:>14}   {'ratio seq/50':>14}  {'against':18}target")
    for kind in kinds:
        figures = "".join(f"{rate[kind, mode]:{width},.0f}" for mode, width in zip(mode_names, (12, 14), strict=True))
        if kind in baselines:
            base, target = baselines[kind]
            ratios = "/".join(f"{rate[kind, mode] / rate[base, mode]:.0%}" for mode in mode_names)
            print(f"{kind:26}{figures}   {ratios:>14}  {base:18}{target}")
        else:
            print(f"{kind:26}{figures}   {'baseline':>14}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", nargs=3, metavar=("CERT", "KEY", "CA"), help=argparse.SUPPRESS)
    parser.add_argument("--sequential", type=int, default=2000, help="requests per round")
    parser.add_argument("--pipelined", type=int, default=10000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=10, help="RPC rounds")
    parser.add_argument("--connections", type=int, default=1000, help="per round and kind")
    parser.add_argument(
        "--tls-connections", type=int, default=200, help="per round and kind (a TLS handshake costs ms)"
    )
    parser.add_argument("--at-once", type=int, default=50)
    parser.add_argument("--connection-rounds", type=int, default=3)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(*args.serve))
        return
    for variable in [name for name in os.environ if name.startswith("VYKED_")]:
        del os.environ[variable]  # every setting is explicit here, in this process and the child
    with tempfile.TemporaryDirectory(prefix="bench-trust-") as directory:
        certs = make_certificates(Path(directory))
        with server_process(__file__, *certs) as ports:
            asyncio.run(measure(ports, certs, args))


if __name__ == "__main__":
    main()
