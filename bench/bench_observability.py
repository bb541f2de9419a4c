"""The cost of metrics on the RPC path: the same echo calls with metrics off and on, in one run.

A child process runs a registry and two hosts of the same echo service under two names, one
without a metrics port and one with (``metrics_port=0``: every request observed by
:class:`vyked.core.metrics.RequestMetrics`); this process calls each through a client host of
the same kind (metrics off for the first, on for the second), rounds interleaved so that drift
hits both alike. With metrics on, both sides of every call are counted and timed, and the
service side's ``/metrics`` is scraped once a round (the figures are checked).

- sequential: one request in flight; latency p50
- pipelined: 100 requests in flight on one connection; requests per second

Target (the observability issue): metrics on within 5% of metrics off. Run:
``python bench/bench_observability.py`` (needs ``vyked-core[metrics]``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import sys
from typing import Any

from bench_rpc import percentile, pipelined, sequential
from server_process import server_process

from vyked import ServiceHost, TCPService, TCPServiceClient, api, request
from vyked.core.serving import run
from vyked.core.testing import http_get

TARGET = 0.05


class Echo(TCPService):
    def __init__(self, name: str) -> None:
        super().__init__(name, 1, "127.0.0.1", 0)

    @api(inline=True)
    def echo(self, x: int, name: str) -> dict[str, Any]:
        return {"x": x, "name": name}


class EchoClient(TCPServiceClient):
    def __init__(self, name: str) -> None:
        super().__init__(name, 1)

    @request
    def echo(self, x: int, name: str) -> dict[str, Any]:
        return locals()


async def serve() -> None:
    from vyked.registry import Registry

    registry = Registry("127.0.0.1", 0)
    await registry.open()
    off = ServiceHost(f"127.0.0.1:{registry.port}")
    off.attach(Echo("EchoOff"))
    on = ServiceHost(f"127.0.0.1:{registry.port}", metrics_port=0, metrics_host="127.0.0.1")
    on.attach(Echo("EchoOn"))
    await off.start()
    await on.start()
    print(registry.port, on.metrics_port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await on.stop()
    await off.stop()
    await registry.close()


async def measure(registry_port: int, metrics_port: int, n_seq: int, n_pipe: int, rounds: int) -> dict[str, Any]:
    hosts, calls = [], {}
    for name, metrics in (("off", None), ("on", 0)):
        host = ServiceHost(f"127.0.0.1:{registry_port}", metrics_port=metrics, metrics_host="127.0.0.1")
        client = EchoClient(f"Echo{name.capitalize()}")
        host.bind_client(client)
        await host.start()
        hosts.append(host)
        calls[name] = lambda i, client=client: client.echo(i, "bench")
    for call in calls.values():  # warm up
        await sequential(call, 500)
        await pipelined(call, 5000)

    # ABBA blocks (off, on, on, off), so that a load that drifts during a round weighs on
    # both alike; each round gives one ratio, and the median ratio is the cost reported.
    results: dict[str, dict[str, list[float]]] = {"off": {"p50": [], "rps": []}, "on": {"p50": [], "rps": []}}
    ratios: dict[str, list[float]] = {"p50": [], "rps": []}
    for _ in range(rounds):
        block: dict[str, dict[str, list[float]]] = {"off": {"p50": [], "rps": []}, "on": {"p50": [], "rps": []}}
        for name in ("off", "on", "on", "off"):
            block[name]["p50"].append(percentile(await sequential(calls[name], n_seq), 50))
            block[name]["rps"].append(await pipelined(calls[name], n_pipe))
        for name in ("off", "on"):
            results[name]["p50"].append(min(block[name]["p50"]))
            results[name]["rps"].append(max(block[name]["rps"]))
        ratios["p50"].append(min(block["on"]["p50"]) / min(block["off"]["p50"]))
        ratios["rps"].append(max(block["on"]["rps"]) / max(block["off"]["rps"]))
        status, text = await asyncio.to_thread(http_get, f"http://127.0.0.1:{metrics_port}/metrics")
        assert status == 200, text
        assert 'vyked_server_requests_total{endpoint="echo"' in text, text[:500]
    scraped = await asyncio.to_thread(http_get, f"http://127.0.0.1:{hosts[1].metrics_port}/metrics")
    counted = [line for line in scraped[1].splitlines() if line.startswith("vyked_client_requests_total{")]
    for host in hosts:
        await host.stop()
    return {
        "best": {name: {"p50": min(r["p50"]), "rps": max(r["rps"])} for name, r in results.items()},
        "ratio": {key: statistics.median(values) for key, values in ratios.items()},
        "counted": counted,
    }


def report(loop: str, figures: dict[str, Any], rounds: int) -> bool:
    best, ratio = figures["best"], figures["ratio"]
    off, on = best["off"], best["on"]
    p50 = ratio["p50"] - 1
    rps = 1 - ratio["rps"]
    ok = p50 <= TARGET and rps <= TARGET
    print(f"\nmetrics on vs off, RPC echo over loopback, {loop} loop: best of {rounds} ABBA rounds;")
    print("cost: the median of the rounds' on/off ratios")
    print(f"{'':24}{'off':>12}{'on':>12}{'cost':>9}   target")
    flag = {True: "", False: "  OVER TARGET"}
    print(f"{'sequential p50 (us)':24}{off['p50'] * 1e6:12.1f}{on['p50'] * 1e6:12.1f}{p50:+9.1%}   <= {TARGET:.0%}")
    print(f"{'pipelined x100 (req/s)':24}{off['rps']:12,.0f}{on['rps']:12,.0f}{-rps:+9.1%}   >= -{TARGET:.0%}")
    if not ok:
        print(flag[False])
    for line in figures["counted"]:
        print("  client side:", line)
    return ok


def main() -> None:
    default_loops = "asyncio,uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--loop", default="asyncio", help=argparse.SUPPRESS)
    parser.add_argument("--loops", default=default_loops, help=f"event loops to measure (default: {default_loops})")
    parser.add_argument("--sequential", type=int, default=3000)
    parser.add_argument("--pipelined", type=int, default=30000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    if args.serve:
        run(serve(), loop=args.loop)
        return
    for loop in args.loops.split(","):
        with server_process(__file__, "--loop", loop) as ports:
            registry_port, metrics_port = ports
            figures = run(measure(registry_port, metrics_port, args.sequential, args.pipelined, args.rounds), loop=loop)
        report(loop, figures, args.rounds)


if __name__ == "__main__":
    main()
