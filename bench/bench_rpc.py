"""RPC round trips through vyked against a raw TCP JSON echo on the same event loop, in one run.

For each event loop, asyncio's and uvloop's (when installed: ``pip install 'vyked-core[uvloop]'``),
a child process runs the servers (a raw echo server, and a vyked registry with an echo ``@api``
service) on that loop, and this process runs the clients on it too, so that client and server
do not share a core and every vyked figure is compared with the raw echo on the same loop.

- sequential: one request in flight; latency p50 / p99
- pipelined: 100 requests in flight on one connection; requests per second, and the CPU time
  of a call (this process's and the server process's: steadier than the rate on a shared machine)

The raw baseline is the fastest honest hand-written service: an ``asyncio.BufferedProtocol``
reading into a preallocated buffer (as vyked's connections do; ``Protocol.data_received``
allocates a fresh ``bytes`` per read), length-prefixed frames, msgspec JSON decoded into
structs, futures matched by request id; and it writes as vyked does: the answers to the
requests of one read in one write, and the requests sent in one pass of the loop while others
are in flight in one write. (With a write per frame the raw echo was about 40% slower
pipelined: measured against that, vyked's coalesced writes would flatter vyked.)

Runs of vyked alternate with runs of the raw echo (``alternating.py``): figures are the best
runs, ratios the median of each vyked run's ratio to the raw runs either side. Targets:
vyked's sequential p50 at most 1.3x the raw echo's, its pipelined throughput at least 80% of
it. Run: ``python bench/bench_rpc.py``; where vyked's extra cost goes, bytecode by bytecode:
``python bench/opcodes_rpc.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import struct
import sys
import time
from typing import Any, cast

import msgspec
from alternating import Figures, alternate
from server_process import cpu_seconds, server_process

from vyked import ServiceHost, TCPService, TCPServiceClient, api, request
from vyked.core.serving import run

IN_FLIGHT = 100
P50_TARGET = 1.3
RPS_TARGET = 0.8


# -- the raw baseline ------------------------------------------------------------------------


class RawRequest(msgspec.Struct):
    id: int
    endpoint: str
    params: dict[str, Any]


class RawResponse(msgspec.Struct):
    id: int
    result: Any


ENCODE = msgspec.json.Encoder().encode
HEADER = struct.Struct(">I")  # as vyked frames: a 4-byte big-endian length
BUFFER_SIZE = 256 * 1024
MIN_READ = 64 * 1024


class RawFramedProtocol(asyncio.BufferedProtocol):
    """What a careful hand-written service does: the loop reads into one preallocated buffer,
    length-prefixed frames are decoded in place, JSON each way; and, as vyked does, frames sent
    while others wait to go leave in one write: the answers to the requests of one read, and
    the requests sent in one pass of the loop while others are in flight."""

    decoder: msgspec.json.Decoder[Any]

    def __init__(self) -> None:
        self.buffer = bytearray(BUFFER_SIZE)
        self.view = memoryview(self.buffer)
        self.start = self.end = 0  # unparsed bytes: buffer[start:end]
        self.corked: list[bytes] | None = None  # frames to write together

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: duck typing only
        self.transport = cast(asyncio.Transport, transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        if BUFFER_SIZE - self.end < MIN_READ:  # move the partial frame to the front
            pending = bytes(self.view[self.start : self.end])
            self.buffer[: len(pending)] = pending
            self.start, self.end = 0, len(pending)
        return self.view[self.end :]

    def buffer_updated(self, nbytes: int) -> None:
        buffer, view, decode, unpack = self.buffer, self.view, self.decoder.decode, HEADER.unpack_from
        start, end = self.start, self.end + nbytes
        # more than one frame arrived: their answers leave together
        corking = self.corked is None and end - start >= 4 and end - start > 4 + unpack(buffer, start)[0]
        if corking:
            self.corked = []
        while end - start >= 4:
            frame_end = start + 4 + unpack(buffer, start)[0]
            if frame_end > end:
                break
            self.message_received(decode(view[start + 4 : frame_end]))
            start = frame_end
        if start == end:
            start = end = 0
        self.start, self.end = start, end
        if corking:
            self.flush()

    def send(self, message: msgspec.Struct) -> None:
        body = ENCODE(message)
        if self.corked is None:
            self.transport.write(HEADER.pack(len(body)) + body)
        else:
            self.corked.append(HEADER.pack(len(body)) + body)

    def send_soon(self, message: msgspec.Struct) -> None:
        """Send at the end of this pass of the loop, with whatever else is sent meanwhile."""
        if self.corked is None:
            self.corked = []
            asyncio.get_running_loop().call_soon(self.flush)
        self.send(message)

    def flush(self) -> None:
        corked, self.corked = self.corked, None
        if corked:
            self.transport.write(b"".join(corked))

    def message_received(self, message: Any) -> None:
        raise NotImplementedError


class RawEchoServer(RawFramedProtocol):
    decoder = msgspec.json.Decoder(RawRequest)

    def message_received(self, message: RawRequest) -> None:
        self.send(RawResponse(message.id, message.params))


class RawEchoClient(RawFramedProtocol):
    decoder = msgspec.json.Decoder(RawResponse)

    def __init__(self) -> None:
        super().__init__()
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.next_id = 0
        self.loop = asyncio.get_running_loop()

    def message_received(self, message: RawResponse) -> None:
        self.pending.pop(message.id).set_result(message.result)

    def echo(self, params: dict[str, Any]) -> asyncio.Future[Any]:
        self.next_id += 1
        future = self.loop.create_future()
        request = RawRequest(self.next_id, "echo", params)
        if self.pending:  # others in flight: more may be sent in this pass, write them together
            self.send_soon(request)
        else:
            self.send(request)
        self.pending[self.next_id] = future
        return future


# -- vyked -------------------------------------------------------------------------------------


class EchoService(TCPService):
    def __init__(self) -> None:
        super().__init__("Echo", 1, "127.0.0.1", 0)

    @api(inline=True)  # like the raw echo: answered in the loop's thread, no handler thread pool
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
    raw.close()


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


HIGHER_IS_BETTER = {"p50": False, "p99": False, "rps": True, "cpu": False}


async def measure(raw_port: int, registry_port: int, server_pid: int, n_seq: int, n_pipe: int, runs: int) -> Figures:
    """``runs`` runs of vyked alternating with runs of the raw echo (``alternating.py``), on
    the running loop; ``server_pid`` is the server process, whose CPU time counts too."""
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

    calls = {"raw": raw_call, "vyked": vyked_call}
    assert await raw_call(1) == await vyked_call(1) == {"x": 1, "name": "bench"}
    for call in calls.values():  # warm up
        await sequential(call, 500)
        await pipelined(call, 5000)

    def cpu() -> float:
        return time.process_time() + (cpu_seconds(server_pid) or 0.0)

    async def one(name: str) -> dict[str, float]:
        latencies = await sequential(calls[name], n_seq)
        p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
        used = cpu()
        rps = await pipelined(calls[name], n_pipe)
        return {"p50": p50, "p99": p99, "rps": rps, "cpu": (cpu() - used) / n_pipe}

    figures = await alternate(one, "vyked", runs, Figures("raw", HIGHER_IS_BETTER))
    await host.stop()
    raw.transport.close()
    return figures


def report(by_loop: dict[str, Figures], runs: int) -> bool:
    """Print every loop's figures; True when vyked meets the targets on every loop."""
    print("\nRPC round trips over one loopback connection, each loop against the raw BufferedProtocol echo on")
    print(f"the same loop, {runs} runs of vyked each between two of the raw echo: figures are the best runs,")
    print("ratios the median of the vyked runs' ratios to the raw runs either side")
    print(f"{'loop':9}{'':24}{'raw echo':>12}{'vyked':>12}{'ratio':>9}   target")
    ok = True
    mark = {True: "", False: "  BELOW TARGET"}
    for loop, figures in by_loop.items():
        raw, vyk = ({k: figures.figure(name, k) for k in HIGHER_IS_BETTER} for name in ("raw", "vyked"))
        p50r, p99r, rpsr, cpur = (figures.ratio("vyked", k) for k in ("p50", "p99", "rps", "cpu"))
        p50_ok, rps_ok = p50r <= P50_TARGET, rpsr >= RPS_TARGET
        ok = ok and p50_ok and rps_ok
        row = f"{loop:9}{'sequential p50 (us)':24}{raw['p50'] * 1e6:12.1f}{vyk['p50'] * 1e6:12.1f}{p50r:8.2f}x"
        print(f"{row}   <= {P50_TARGET}x{mark[p50_ok]}")
        print(f"{loop:9}{'sequential p99 (us)':24}{raw['p99'] * 1e6:12.1f}{vyk['p99'] * 1e6:12.1f}{p99r:8.2f}x")
        row = f"{loop:9}{'pipelined x100 (req/s)':24}{raw['rps']:12,.0f}{vyk['rps']:12,.0f}{rpsr:9.0%}"
        print(f"{row}   >= {RPS_TARGET:.0%}{mark[rps_ok]}")
        row = f"{loop:9}{'pipelined CPU/call (us)':24}{raw['cpu'] * 1e6:12.1f}{vyk['cpu'] * 1e6:12.1f}{cpur:8.2f}x"
        print(row)
    if "asyncio" in by_loop and "uvloop" in by_loop:
        a, u = by_loop["asyncio"], by_loop["uvloop"]
        for name in ("raw", "vyked"):
            rps = u.figure(name, "rps") / a.figure(name, "rps") - 1
            p50 = u.figure(name, "p50") / a.figure(name, "p50") - 1
            print(f"uvloop against asyncio, {name:5}: pipelined {rps:+.0%}, sequential p50 {p50:+.0%} (best runs)")
    return ok


def main() -> None:
    default_loops = "asyncio,uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--loop", default="asyncio", help=argparse.SUPPRESS)
    parser.add_argument("--loops", default=default_loops, help=f"event loops to measure (default: {default_loops})")
    parser.add_argument("--sequential", type=int, default=1000, help="sequential calls per run")
    parser.add_argument("--pipelined", type=int, default=10000, help="pipelined calls per run")
    parser.add_argument("--runs", type=int, default=20, help="runs of vyked, alternating with runs of the raw echo")
    args = parser.parse_args()
    if args.serve:
        run(serve(), loop=args.loop)
        return
    by_loop: dict[str, Figures] = {}
    for loop in args.loops.split(","):
        with server_process(__file__, "--loop", loop) as ports:
            raw_port, registry_port = ports
            by_loop[loop] = run(
                measure(raw_port, registry_port, ports.pid, args.sequential, args.pipelined, args.runs), loop=loop
            )
    report(by_loop, args.runs)


if __name__ == "__main__":
    main()
