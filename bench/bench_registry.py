"""Registry scale: 1,000 instances, each on its own connection, and 100 consumers.

The registry runs in a child process (so its memory and CPU can be read from /proc); this
process simulates the service hosts: each simulated instance is a real vyked connection
that completes the handshake, registers, answers heartbeats, and sends its own. Reported:

- registration time for 1,000 instances (100 registering at a time)
- registry memory (RSS) before and after
- registry CPU per second of idle heartbeating with 1,000 hosts connected
- time for one added instance to reach 100 consumers that watch its service, against a raw
  asyncio server writing the same frame to 100 connected sockets (the floor for a fan-out)

in memory, and with ``--redis`` (state shared through a real redis-server it starts).
Run: ``python bench/bench_registry.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid

from vyked.core.protocol import encode_frame
from vyked.core.protocol.packets import InstanceAdded, InstanceInfo, Instances, Packet, Register, Registered, Watch
from vyked.core.testing import RedisServer, free_port, wait_for_port
from vyked.core.transport import Connection, open_connection

INSTANCES = 1000
CONSUMERS = 100


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))


class SimulatedHost:
    """One service host: registers one instance; may watch a service."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.registered: asyncio.Future[None] = loop.create_future()
        self.snapshot: asyncio.Future[None] = loop.create_future()
        self.added: asyncio.Future[float] = loop.create_future()

    def packet_received(self, conn: Connection, packet: Packet) -> None:
        if isinstance(packet, Registered) and not self.registered.done():
            self.registered.set_result(None)
        elif isinstance(packet, Instances) and not self.snapshot.done():
            self.snapshot.set_result(None)
        elif isinstance(packet, InstanceAdded) and not self.added.done():
            self.added.set_result(time.perf_counter())

    def connection_lost(self, conn: Connection, exc: BaseException | None) -> None:
        pass


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def info(service: str, i: int) -> InstanceInfo:
    return InstanceInfo(service, "1", "127.0.0.1", 10000 + i, uuid.uuid4().hex)


async def register_all(port: int) -> tuple[list[Connection], float]:
    connections: list[Connection] = []

    async def one(i: int) -> None:
        host = SimulatedHost()
        conn = await open_connection("127.0.0.1", port, host, role="host", timeout=30)
        conn.start_heartbeat()
        conn.send(Register(instance=info(f"Service{i % 50}", i)))
        await host.registered
        connections.append(conn)

    started = time.perf_counter()
    for batch in range(0, INSTANCES, 100):
        await asyncio.gather(*(one(i) for i in range(batch, batch + 100)))
    return connections, time.perf_counter() - started


async def fan_out_vyked(port: int, rounds: int) -> list[float]:
    consumers = []
    for _ in range(CONSUMERS):
        host = SimulatedHost()
        conn = await open_connection("127.0.0.1", port, host, role="host", timeout=30)
        conn.send(Watch(services=["Target"]))
        await host.snapshot
        consumers.append((conn, host))
    timings = []
    for r in range(rounds):
        for _, host in consumers:
            host.added = asyncio.get_running_loop().create_future()
        producer_host = SimulatedHost()
        producer = await open_connection("127.0.0.1", port, producer_host, role="host")
        started = time.perf_counter()
        producer.send(Register(instance=info("Target", 100_000 + r)))
        arrivals = await asyncio.gather(*(host.added for _, host in consumers))
        timings.append(max(arrivals) - started)
        producer.close()
        await asyncio.sleep(0.05)
    for conn, _ in consumers:
        conn.close()
    return timings


async def fan_out_raw(rounds: int) -> list[float]:
    """The floor: a raw asyncio server writes one frame to 100 sockets; all read it."""
    writers: list[asyncio.StreamWriter] = []
    connected = asyncio.Event()
    done = asyncio.Event()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        if len(writers) == CONSUMERS:
            connected.set()
        await done.wait()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    clients = [await asyncio.open_connection("127.0.0.1", port) for _ in range(CONSUMERS)]
    await connected.wait()
    frame = bytes(encode_frame(InstanceAdded(instance=info("Target", 0))))
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        for writer in writers:
            writer.write(frame)
        await asyncio.gather(*(reader.readexactly(len(frame)) for reader, _ in clients))
        timings.append(time.perf_counter() - started)
        await asyncio.sleep(0.05)
    done.set()
    for _, writer in clients:
        writer.close()
    for writer in writers:
        writer.close()
    server.close()
    await server.wait_closed()
    return timings


async def run(port: int, pid: int, idle_seconds: float, rounds: int) -> dict[str, float]:
    before = rss_mib(pid)
    connections, registration = await register_all(port)
    after = rss_mib(pid)
    await asyncio.sleep(1.0)
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(idle_seconds)
    idle_cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
    fan = await fan_out_vyked(port, rounds)
    for conn in connections:
        conn.close()
    return {
        "registration": registration,
        "rss_before": before,
        "rss_after": after,
        "idle_cpu": idle_cpu,
        "fan_p50": statistics.median(fan),
        "fan_max": max(fan),
    }


def start_registry(*extra: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    code = (
        "import resource, sys; s, h = resource.getrlimit(resource.RLIMIT_NOFILE); "
        "resource.setrlimit(resource.RLIMIT_NOFILE, (max(s, min(h, 8192)), h)); "
        "from vyked.registry.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--port", str(port), "--log-level", "WARNING", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port)
    return proc, port


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    raise_fd_limit()

    results = {}
    with RedisServer() as redis:
        for mode, extra in (("in memory", ()), ("with --redis", ("--redis", redis.url))):
            proc, port = start_registry(*extra)
            try:
                results[mode] = asyncio.run(run(port, proc.pid, args.idle_seconds, args.rounds))
            finally:
                proc.terminate()
                proc.wait(10)
    raw = asyncio.run(fan_out_raw(args.rounds))
    raw_p50 = statistics.median(raw)

    print(f"\nRegistry scale: {INSTANCES} instances on {INSTANCES} connections, {CONSUMERS} consumers")
    print(f"{'':44}{'in memory':>14}{'with --redis':>14}")
    rows = [
        ("register 1,000 instances (s)", "registration", "{:14.3f}"),
        ("registry RSS before (MiB)", "rss_before", "{:14.1f}"),
        ("registry RSS with 1,000 hosts (MiB)", "rss_after", "{:14.1f}"),
        ("registry CPU, idle heartbeats (CPU s/s)", "idle_cpu", "{:14.3f}"),
        ("added instance -> 100 consumers p50 (ms)", "fan_p50", "{:14.2f}"),
        ("added instance -> 100 consumers max (ms)", "fan_max", "{:14.2f}"),
    ]
    for label, key, fmt in rows:
        scale = 1000 if key.startswith("fan") else 1
        values = "".join(fmt.format(results[m][key] * scale) for m in ("in memory", "with --redis"))
        print(f"{label:44}{values}")
    print(f"{'raw asyncio: one frame to 100 sockets p50 (ms)':44}{raw_p50 * 1000:14.2f}")
    print(
        f"{'fan-out ratio to the raw floor':44}"
        f"{results['in memory']['fan_p50'] / raw_p50:13.1f}x{results['with --redis']['fan_p50'] / raw_p50:13.1f}x"
    )


if __name__ == "__main__":
    main()
