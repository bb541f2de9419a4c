"""Where an RPC call's time goes: Python bytecodes executed per call, by function, vyked against
the raw echo of ``bench_rpc.py``, client and server in this one process.

Timings on a shared machine swing by several percent from run to run; bytecode counts do not,
so this is the tool for finding and checking a cut on the hot path (a bytecode costs about
25 machine instructions here, a Python call about a hundred more). Run:
``python bench/opcodes_rpc.py [--mode sequential|pipelined] [--loop asyncio|uvloop]``; add
``--lines _send,dispatch_all`` to see those functions' counts line by line.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

from bench_rpc import EchoClient, EchoService, RawEchoClient, RawEchoServer, pipelined, sequential

from vyked import ServiceHost
from vyked.core.metrics import RequestMetrics
from vyked.core.serving import run

Function = tuple[str, str]
"""``(file name, function name)``."""


def count_bytecodes(counts: collections.Counter[Function], by_line: frozenset[str] = frozenset()) -> Callable[..., Any]:
    """A ``sys.settrace`` function adding every bytecode executed to ``counts``; in the
    functions named in ``by_line``, line by line (``name:line``)."""

    def trace(frame: FrameType, event: str, arg: object) -> Callable[..., Any]:
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        file, name = frame.f_code.co_filename.rsplit("/", 1)[-1], frame.f_code.co_name
        key = (file, name)

        def each(frame: FrameType, event: str, arg: object) -> Callable[..., Any]:
            if event == "opcode":
                counts[key] += 1
            return each

        def each_line(frame: FrameType, event: str, arg: object) -> Callable[..., Any]:
            if event == "opcode":
                counts[(file, f"{name}:{frame.f_lineno}")] += 1
            return each_line

        if name in by_line:
            return each_line

        return each

    return trace


async def count(
    mode: str, calls: int, by_line: frozenset[str], metrics: bool = False
) -> dict[str, collections.Counter[Function]]:
    """Bytecodes per function over ``calls`` calls of each echo, after a warm-up; with
    ``metrics``, both vyked hosts count their requests (:class:`RequestMetrics`)."""
    from vyked.registry import Registry

    loop = asyncio.get_running_loop()
    raw_server = await loop.create_server(RawEchoServer, "127.0.0.1", 0)
    _, raw = await loop.create_connection(RawEchoClient, "127.0.0.1", raw_server.sockets[0].getsockname()[1])
    registry = Registry("127.0.0.1", 0)
    await registry.open()
    server = ServiceHost(f"127.0.0.1:{registry.port}")
    server.attach(EchoService())
    await server.start()
    host = ServiceHost(f"127.0.0.1:{registry.port}")
    client = EchoClient()
    host.bind_client(client)
    await host.start()
    if metrics:
        server.observers = [RequestMetrics()]
        host.observers = [RequestMetrics()]
    echoes: dict[str, Callable[[int], Awaitable[Any]]] = {
        "raw": lambda i: raw.echo({"x": i, "name": "bench"}),
        "vyked": lambda i: client.echo(i, "bench"),
    }
    run_mode = sequential if mode == "sequential" else pipelined
    counted: dict[str, collections.Counter[Function]] = {}
    for name, echo in echoes.items():
        await pipelined(echo, 3000)
        await sequential(echo, 300)
        counts = counted[name] = collections.Counter()
        sys.settrace(count_bytecodes(counts, by_line))
        try:
            await run_mode(echo, calls)
        finally:
            sys.settrace(None)
    await host.stop()
    await server.stop()
    await registry.close()
    raw.transport.close()
    raw_server.close()
    return counted


def report(counted: dict[str, collections.Counter[Function]], calls: int, mode: str) -> None:
    print(f"\nbytecodes per {mode} call, by function (client and server in this process; >= 0.5 shown)")
    for name, counts in counted.items():
        print(f"\n{name}: {sum(counts.values()) / calls:.0f} in all")
        for (file, function), n in counts.most_common():
            if n / calls >= 0.5:
                print(f"  {n / calls:7.1f}  {file}:{function}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("sequential", "pipelined"), default="sequential")
    parser.add_argument("--loop", default="asyncio", help="asyncio or uvloop")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--lines", default="", help="functions to count line by line (comma-separated names)")
    parser.add_argument("--metrics", action="store_true", help="with metrics on both vyked hosts")
    args = parser.parse_args()
    by_line = frozenset(filter(None, args.lines.split(",")))
    report(run(count(args.mode, args.calls, by_line, args.metrics), loop=args.loop), args.calls, args.mode)


if __name__ == "__main__":
    main()
