"""HTTP through vyked against bare aiohttp, in the same run: a small JSON POST echo.

The servers (a bare aiohttp application and a vyked registry with an HTTPService, both
serving the same ``POST /echo`` handler body) run in a child process; this process runs the
load, so client and servers do not share a core. Three set-ups, interleaved over rounds:

- ``bare -> bare``: one aiohttp.ClientSession against the bare application
- ``bare -> vyked``: the same session against the HTTPService       (server-side ratio: / bare)
- ``vyked -> vyked``: an HTTPServiceClient through the registry     (client-side ratio: / bare -> vyked)

Each set-up is measured with ``--concurrency`` requests in flight (requests per second) and
one at a time (latency percentiles), and by the CPU time its process spent per request: on
two cores the load client saturates first, so throughput alone would hide server overhead.
Run: ``python bench/bench_http.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from server_process import server_process

from vyked import HTTPService, HTTPServiceClient, Request, ServiceHost, post

PAYLOAD = {"id": 12345, "name": "bench", "tags": ["a", "b", "c"], "active": True}
TARGET = 0.85


async def echo_body(request: web.Request) -> web.Response:
    """The handler body both servers run."""
    return web.json_response(await request.json())


# -- the servers --------------------------------------------------------------------------------


class EchoHTTPService(HTTPService):
    def __init__(self) -> None:
        super().__init__("BenchEcho", 1, "127.0.0.1", 0)

    @post(path="/echo")
    async def echo(self, request: Request) -> web.Response:
        return await echo_body(request)


async def cpu_time(request: web.Request) -> web.Response:
    """Not measured: lets the load process read the server process's CPU time."""
    return web.Response(text=repr(time.process_time()))


async def serve() -> None:
    from vyked.registry import Registry

    bare = web.Application()
    bare.router.add_post("/echo", echo_body)
    bare.router.add_get("/_cpu", cpu_time)
    runner = web.AppRunner(bare)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    bare_port = runner.addresses[0][1]

    registry = Registry("127.0.0.1", 0)
    await registry.open()
    host = ServiceHost(f"127.0.0.1:{registry.port}")
    service = EchoHTTPService()
    host.attach(service)
    await host.start()
    print(bare_port, service.host_port, registry.port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    await host.stop()
    await registry.close()
    await runner.cleanup()


# -- the load -----------------------------------------------------------------------------------


class EchoClient(HTTPServiceClient):
    def __init__(self) -> None:
        super().__init__("BenchEcho", 1)

    @post()
    def echo(self, payload: dict[str, Any]) -> dict[str, Any]:
        path = "/echo"
        json = payload
        return locals()


Call = Callable[[], Awaitable[Any]]


async def concurrent(call: Call, concurrency: int, duration: float) -> tuple[float, int]:
    """Requests per second with ``concurrency`` in flight, and how many were made."""
    done = 0
    deadline = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await call()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - started), done


async def sequential(call: Call, n: int) -> list[float]:
    latencies = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        latencies.append(time.perf_counter() - started)
    return latencies


async def measure(bare_port: int, vyked_port: int, registry_port: int, args: argparse.Namespace) -> None:
    session = aiohttp.ClientSession()
    host = ServiceHost(f"127.0.0.1:{registry_port}")
    client = EchoClient()
    host.bind_client(client)
    await host.start()

    def bare_call(port: int) -> Call:
        url = f"http://127.0.0.1:{port}/echo"

        async def call() -> Any:
            async with session.post(url, json=PAYLOAD) as response:
                return await response.json()

        return call

    async def vyked_call() -> Any:
        response = await client.echo(PAYLOAD)
        return await response.json()

    async def server_cpu() -> float:
        async with session.get(f"http://127.0.0.1:{bare_port}/_cpu") as response:
            return float(await response.text())

    setups: dict[str, Call] = {
        "bare -> bare": bare_call(bare_port),
        "bare -> vyked": bare_call(vyked_port),
        "vyked -> vyked": vyked_call,
    }
    for call in setups.values():
        assert await call() == PAYLOAD
        await concurrent(call, args.concurrency, 0.3)  # warm up
        await sequential(call, 200)

    results: dict[str, dict[str, list[float]]] = {name: {} for name in setups}
    names = list(setups)
    for round_ in range(args.rounds):
        # interleaved, in a rotating order, so that drift and neighbours' load hit every set-up alike
        for name in names[round_ % 3 :] + names[: round_ % 3]:
            call = setups[name]
            server_before, client_before = await server_cpu(), time.process_time()
            rps, count = await concurrent(call, args.concurrency, args.duration)
            server_after, client_after = await server_cpu(), time.process_time()
            latencies = sorted(await sequential(call, args.sequential))
            r = results[name]
            r.setdefault("rps", []).append(rps)
            r.setdefault("server_cpu", []).append((server_after - server_before) / count)
            r.setdefault("client_cpu", []).append((client_after - client_before) / count)
            r.setdefault("p50", []).append(statistics.median(latencies))
            r.setdefault("p99", []).append(latencies[int(len(latencies) * 0.99) - 1])
    await host.stop()
    await session.close()
    report(results, args)


def report(results: dict[str, dict[str, list[float]]], args: argparse.Namespace) -> None:
    """Medians over the rounds; ratios are medians of each round's paired ratio."""
    median = {name: {key: statistics.median(values) for key, values in r.items()} for name, r in results.items()}

    def paired(base: str, ours: str, key: str, higher_is_better: bool) -> float:
        pairs = zip(results[base][key], results[ours][key], strict=True)
        return statistics.median((o / b) if higher_is_better else (b / o) for b, o in pairs)

    print(
        f"\nHTTP JSON POST echo over loopback; servers in a child process, load in this one\n"
        f"medians of {args.rounds} interleaved rounds; x{args.concurrency} = {args.concurrency} requests in flight"
    )
    print(f"{'':34}{'baseline':>12}{'vyked':>12}{'ratio':>9}   target")
    rows = [
        ("server", "bare -> bare", "bare -> vyked", "server_cpu"),
        ("client", "bare -> vyked", "vyked -> vyked", "client_cpu"),
    ]
    verdicts = []
    for side, base, ours, cpu in rows:
        b, v = median[base], median[ours]
        ratio = paired(base, ours, "rps", True)
        cpu_ratio = paired(base, ours, cpu, False)  # CPU per request, as a throughput ratio
        verdicts.append((side, ratio, cpu_ratio))
        print(f"{side} side: {base} vs {ours}")
        label = f"  throughput x{args.concurrency} (req/s)"
        print(f"{label:34}{b['rps']:12,.0f}{v['rps']:12,.0f}{ratio:9.0%}   >= 85%")
        label = f"  {side} CPU per request (us)"
        print(f"{label:34}{b[cpu] * 1e6:12.1f}{v[cpu] * 1e6:12.1f}{cpu_ratio:9.0%}   >= 85%")
        for key, name in (("p50", "sequential p50 (us)"), ("p99", "sequential p99 (us)")):
            print(f"{'  ' + name:34}{b[key] * 1e6:12.1f}{v[key] * 1e6:12.1f}{paired(base, ours, key, False):9.0%}")
    print("ratios are vyked relative to the baseline, >100% is better (CPU and latency: baseline / vyked)")
    for side, ratio, cpu_ratio in verdicts:
        status = "ok" if min(ratio, cpu_ratio) >= TARGET else "BELOW TARGET"
        print(f"{side} side: {ratio:.0%} of bare aiohttp throughput, {cpu_ratio:.0%} by CPU per request: {status}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=1.0, help="seconds per throughput run")
    parser.add_argument("--sequential", type=int, default=500, help="requests per latency run")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve())
        return
    with server_process(__file__) as ports:
        bare_port, vyked_port, registry_port = ports
        asyncio.run(measure(bare_port, vyked_port, registry_port, args))


if __name__ == "__main__":
    main()
