"""RPC round trips through vyked against a raw asyncio TCP JSON echo, in the same run.

The servers (a raw echo server, and a vyked registry with an echo ``@api`` service) run in a
child process; this process runs the clients, so client and server do not share a core.

- sequential: one request in flight; latency p50 / p99
- pipelined: 100 requests in flight on one connection; requests per second

The raw baseline is what a hand-written service would do: asyncio.Protocol, length-prefixed
frames, msgspec JSON, futures matched by request id. Run: ``python bench/bench_rpc.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Any

import msgspec
from server_process import server_process

from vyked import ServiceHost, TCPService, TCPServiceClient, api, request

ENCODE = msgspec.json.Encoder().encode
DECODE = msgspec.json.Decoder().decode
IN_FLIGHT = 100


# -- the raw baseline ------------------------------------------------------------------------


class RawFramedProtocol(asyncio.Protocol):
    """What a hand-written service does: split length-prefixed frames, JSON each way."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while len(buffer) >= 4:
            size = int.from_bytes(buffer[:4], "big")
            if len(buffer) < 4 + size:
                break
            message = DECODE(buffer[4 : 4 + size])
            del buffer[: 4 + size]
            self.message_received(message)

    def send(self, message: dict[str, Any]) -> None:
        body = ENCODE(message)
        self.transport.write(len(body).to_bytes(4, "big") + body)

    def message_received(self, message: dict[str, Any]) -> None:
        raise NotImplementedError


class RawEchoServer(RawFramedProtocol):
    def message_received(self, message: dict[str, Any]) -> None:
        self.send({"id": message["id"], "result": message["params"]})


class RawEchoClient(RawFramedProtocol):
    def __init__(self) -> None:
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.next_id = 0

    def message_received(self, message: dict[str, Any]) -> None:
        self.pending.pop(message["id"]).set_result(message["result"])

    def echo(self, params: dict[str, Any]) -> asyncio.Future[Any]:
        self.next_id += 1
        future = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = future
        self.send({"id": self.next_id, "endpoint": "echo", "params": params})
        return future


# -- vyked -------------------------------------------------------------------------------------


class EchoService(TCPService):
    def __init__(self) -> None:
        super().__init__("Echo", 1, "127.0.0.1", 0)

    @api
    def echo(self, x: int, name: str) -> dict[str, Any]:
        return {"x": x, "name": name}


class EchoClient(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__("Echo", 1)

    @request
    def echo(self, x: int, name: str) -> dict[str, Any]:
        return locals()


# -- server process ---------------------------------------------------------------------------


async def serve() -> None:
    from vyked.registry import Registry

    loop = asyncio.get_running_loop()
    raw = await loop.create_server(RawEchoServer, "127.0.0.1", 0)
    registry = Registry("127.0.0.1", 0)
    await registry.open()
    host = ServiceHost(f"127.0.0.1:{registry.port}")
    host.attach(EchoService())
    await host.start()
    print(raw.sockets[0].getsockname()[1], registry.port, flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin
    await host.stop()
    await registry.close()


# -- measurement ------------------------------------------------------------------------------


async def sequential(call: Any, n: int) -> list[float]:
    latencies = []
    for i in range(n):
        started = time.perf_counter()
        await call(i)
        latencies.append(time.perf_counter() - started)
    return latencies


async def pipelined(call: Any, n: int) -> float:
    per_worker = n // IN_FLIGHT

    async def worker() -> None:
        for i in range(per_worker):
            await call(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    return per_worker * IN_FLIGHT / (time.perf_counter() - started)


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


async def measure(raw_port: int, registry_port: int, n_seq: int, n_pipe: int, rounds: int) -> None:
    loop = asyncio.get_running_loop()
    _, raw = await loop.create_connection(RawEchoClient, "127.0.0.1", raw_port)

    def raw_call(i: int) -> asyncio.Future[Any]:
        return raw.echo({"x": i, "name": "bench"})

    host = ServiceHost(f"127.0.0.1:{registry_port}")
    client = EchoClient()
    host.bind_client(client)
    await host.start()

    def vyked_call(i: int) -> asyncio.Future[Any]:
        return client.echo(i, "bench")

    assert await raw_call(1) == await vyked_call(1) == {"x": 1, "name": "bench"}
    for call in (raw_call, vyked_call):  # warm up
        await sequential(call, 500)
        await pipelined(call, 5000)

    results: dict[str, dict[str, list[float]]] = {"raw": {}, "vyked": {}}
    for _ in range(rounds):  # interleaved, so drift hits both alike
        for name, call in (("raw", raw_call), ("vyked", vyked_call)):
            lat = await sequential(call, n_seq)
            results[name].setdefault("p50", []).append(percentile(lat, 50))
            results[name].setdefault("p99", []).append(percentile(lat, 99))
            results[name].setdefault("rps", []).append(await pipelined(call, n_pipe))
    await host.stop()
    raw.transport.close()

    best = {name: {"p50": min(r["p50"]), "p99": min(r["p99"]), "rps": max(r["rps"])} for name, r in results.items()}
    print(f"\nRPC round trips over one loopback connection (best of {rounds} rounds)")
    print(f"{'':28}{'raw asyncio':>14}{'vyked':>14}{'ratio':>10}   target")
    p50r = best["vyked"]["p50"] / best["raw"]["p50"]
    p99r = best["vyked"]["p99"] / best["raw"]["p99"]
    rpsr = best["vyked"]["rps"] / best["raw"]["rps"]
    raw, vyk = best["raw"], best["vyked"]
    print(f"{'sequential p50 (us)':28}{raw['p50'] * 1e6:14.1f}{vyk['p50'] * 1e6:14.1f}{p50r:9.2f}x   <= 2x")
    print(f"{'sequential p99 (us)':28}{raw['p99'] * 1e6:14.1f}{vyk['p99'] * 1e6:14.1f}{p99r:9.2f}x")
    print(f"{'pipelined x100 (req/s)':28}{raw['rps']:14,.0f}{vyk['rps']:14,.0f}{rpsr:9.0%}    >= 50%")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sequential", type=int, default=5000)
    parser.add_argument("--pipelined", type=int, default=50000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve())
        return
    with server_process(__file__) as ports:
        raw_port, registry_port = ports
        asyncio.run(measure(raw_port, registry_port, args.sequential, args.pipelined, args.rounds))


if __name__ == "__main__":
    main()
