"""Fuzz the vyked wire: a million generated inputs against the sans-IO session, then hostile
connections against a real registry and a real TCP service (``nox -s fuzz``).

python fuzz/fuzz_wire.py [--inputs N] [--workers N] [--seed N] [--connections N] [--style async|sync]
                        [--skip SCENARIO,...]

1. In-process: ``--inputs`` generated inputs (malformed, mistyped and truncated frames, random
   bytes, huge lengths, deep nesting, long strings, packet floods, handshake abuse) fed in random
   chunkings to accepting and connecting sessions, with and without a cluster secret. A session
   must return packets or set ``failure`` to a vyked error, never raise; its goodbye must be one
   ``error`` packet of that code, with a bounded message; its receive buffer must hold about what
   was received.
2. Over loopback: ``python -m vyked.registry`` and ``fuzz_service.py`` as subprocesses take
   ``--connections`` generated hostile connections each, oversized headers, 16 MiB drips, ping
   and request floods that never read, register, watch and subscribe floods; an innocent caller
   runs throughout. Afterwards each process must be alive, serve a new well-behaved host (it
   registers and calls) and be back within 10 % of its RSS before the attack. "Before" is
   measured after a warm-up: well-behaved traffic of about the attack's concurrency, and a
   sample of the attack a hundredth of its size, so that what runs once (lazy imports on error
   paths, the allocator's first growth) is not counted as growth; what the full attack leaves
   behind is.

Prints the counts and figures; exits 1 if any check failed. Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

from hostile import PING, SessionReport, run_session_inputs
from sockets import (
    RssSampler,
    Scenario,
    Target,
    drip,
    flood_packets,
    generic,
    huge_watch,
    legit,
    oversized,
    packet_frame,
    raise_fd_limit,
    random_registration,
    random_subscription,
    request_frame,
    rss_kib,
    unread,
    wait_for_line,
)

from vyked import TCPService, TCPServiceClient, api, request
from vyked.core.service_host import ServiceHost
from vyked.core.testing import ProcessRunner, SteadyCaller

HERE = Path(__file__).resolve().parent
RSS_TOLERANCE = 0.10


# -- phase 1: the session, in-process ---------------------------------------------------------


def _worker(job: tuple[int, int]) -> SessionReport:
    return run_session_inputs(*job)


def session_phase(inputs: int, workers: int, seed: int) -> tuple[SessionReport, list[str]]:
    batch = 25_000
    jobs = [(seed * 1_000_003 + i, min(batch, inputs - start)) for i, start in enumerate(range(0, inputs, batch))]
    total = SessionReport()
    started = time.monotonic()
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        for done, report in enumerate(pool.imap_unordered(_worker, jobs), 1):
            total.merge(report)
            if done % 8 == 0 or done == len(jobs):
                rate = total.inputs / (time.monotonic() - started)
                print(f"  session inputs {total.inputs:>9,} ({rate:,.0f}/s), failures {sum(total.failures.values())}")
    total.seconds = time.monotonic() - started
    failures = [
        f"{count} inputs: {check}\n      e.g. {total.examples[check]}" for check, count in total.failures.items()
    ]
    return total, failures


def print_session_report(report: SessionReport) -> None:
    print(
        f"\nSession phase: {report.inputs:,} inputs, {report.frames:,} frames, {report.bytes / 2**20:,.0f} MiB "
        f"in {report.seconds:.0f} s ({report.inputs / report.seconds:,.0f} inputs/s)"
    )
    print("  kinds:    " + ", ".join(f"{k} {v:,}" for k, v in report.kinds.most_common()))
    print("  outcomes: " + ", ".join(f"{k} {v:,}" for k, v in report.outcomes.most_common()))
    print(
        f"  longest error message {report.longest_error_message:,} chars; "
        f"largest receive buffer {report.largest_buffer / 1024:,.0f} KiB"
    )


# -- phase 2: real processes over loopback -------------------------------------------------------


class FuzzClient(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__("FuzzService", 1)

    @request(timeout=10)
    def echo(self, value: Any) -> dict[str, Any]:
        return locals()


class ProbeService(TCPService):
    """What a well-behaved host registers, to prove the registry still takes registrations."""

    def __init__(self) -> None:
        super().__init__("FuzzProbe", 1, "127.0.0.1", 0)

    @api
    async def hello(self) -> str:
        return "hello"


async def well_behaved(registry_port: int) -> str:
    """A new host registers a service and calls FuzzService; returns '' or what went wrong."""
    host = ServiceHost(f"127.0.0.1:{registry_port}", heartbeat_interval=0.5, heartbeat_timeout=5.0)
    client = FuzzClient()
    host.attach(ProbeService())
    host.bind_client(client)
    try:
        async with asyncio.timeout(20):
            await host.start()
            for n in range(20):
                if await client.echo({"n": n, "s": "é" * n}) != {"n": n, "s": "é" * n}:
                    return "echo answered something else"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        await host.stop()
    return ""


TARGET_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}
"""glibc's allocator raises its mmap threshold after freeing large blocks and then keeps freed
heap memory; a fixed threshold makes large buffers (write buffers of peers that never read)
go back to the system when freed. A usual production setting for Python services; the RSS
check measures the targets with it (``--glibc-defaults`` measures without)."""


def start_targets(style: str, glibc_defaults: bool = False) -> tuple[Target, Target]:
    env = {} if glibc_defaults else TARGET_ENV
    registry = ProcessRunner("-m", "vyked.registry", "--port", "0", env=env).start()
    registry_port = int(wait_for_line(registry, r" listening on 127\.0\.0\.1:(\d+), ").group(1))
    service = ProcessRunner(
        str(HERE / "fuzz_service.py"), "--registry", f"127.0.0.1:{registry_port}", "--style", style, env=env
    ).start()
    service_port = int(wait_for_line(service, r"tcp FuzzService v1 serving on 127\.0\.0\.1:(\d+)").group(1))
    return Target("registry", registry_port, registry), Target("service", service_port, service)


async def settle_rss(targets: list[Target], before: dict[str, int], patience: float) -> dict[str, int]:
    """RSS of each target once within tolerance of ``before``, or after ``patience`` seconds."""
    deadline = time.monotonic() + patience
    while True:
        now = {t.name: rss_kib(t.pid) for t in targets if t.alive()}
        settled = all(now.get(t.name, 0) <= before[t.name] * (1 + RSS_TOLERANCE) for t in targets)
        if settled or time.monotonic() > deadline:
            return now
        await asyncio.sleep(0.5)


SCENARIOS = ("generated", "oversized", "drip", "unread", "register", "subscribe")


async def attack(
    registry: Target, service: Target, connections: int, seed: int, skip: set[str], scale: float = 1.0
) -> list[Scenario]:
    """Every socket scenario not in ``skip``, at ``scale`` of its full size."""

    def n(full: int) -> int:
        return max(1, int(full * scale))

    scenarios: list[Scenario] = []
    targets = [registry, service]
    for i, target in enumerate(targets):
        s = seed * 31 + i
        if "generated" not in skip:
            scenarios.append(await generic(target, connections, s))
        if "oversized" not in skip:
            scenarios.append(await oversized(target, n(300), s))
    if "drip" not in skip:
        scenarios += await asyncio.gather(*(drip(t, n(200), seed + i) for i, t in enumerate(targets)))
    if "unread" not in skip:
        scenarios += await asyncio.gather(
            unread(registry, "unread pings", n(5), PING, n(400_000), seed),
            unread(service, "unread pings", n(5), PING, n(400_000), seed),
            unread(registry, "unread status", n(10), packet_frame({"type": "status"}), n(50_000), seed),
            unread(service, "unread requests", n(10), request_frame("blob", {"size": 4096}), n(50_000), seed),
        )
    if "register" not in skip:
        scenarios.append(await flood_packets(registry, "register+watch", n(20), random_registration, 50, seed))
        scenarios.append(await flood_packets(registry, "100k-name watch", 1, huge_watch(n(100_000)), 1, seed))
    if "subscribe" not in skip:
        scenarios.append(await flood_packets(service, "subscribe", n(50), random_subscription, 20, seed))
    return scenarios


async def socket_phase(
    connections: int, seed: int, style: str, skip: set[str], glibc_defaults: bool = False
) -> tuple[list[Scenario], list[str], dict[str, Any]]:
    registry, service = start_targets(style, glibc_defaults)
    targets = [registry, service]
    failures: list[str] = []
    figures: dict[str, Any] = {}
    try:
        # Warm-up with well-behaved traffic only, of about the attack's concurrency, so that
        # "before" counts what lazy imports and a busy moment of normal use cost.
        if problem := await well_behaved(registry.port):
            failures.append(f"well-behaved host failed before the attack: {problem}")
        fresh = {t.name: rss_kib(t.pid) for t in targets}
        status = packet_frame({"type": "status"})
        await legit(registry, 300, status, 10)
        await legit(service, 300, request_frame("echo", {"value": "x" * 100}), 10)
        await legit(service, 10, request_frame("blob", {"size": 4096}), 2000)
        # ... and what the first refusals of each kind cost once (lazy imports on error paths,
        # the allocator's first growth): a sample of the attack, a hundredth of its size.
        await attack(registry, service, connections // 100, seed - 1, skip, scale=0.01)
        for _ in range(2):
            if problem := await well_behaved(registry.port):
                failures.append(f"well-behaved host failed before the attack: {problem}")
        await asyncio.sleep(2)
        before = {t.name: rss_kib(t.pid) for t in targets}
        logs_before = {t.name: t.log_bytes() for t in targets}

        host = ServiceHost(f"127.0.0.1:{registry.port}")
        client = FuzzClient()
        host.bind_client(client)
        await host.start()
        innocent = SteadyCaller(client.echo).start()
        started = time.monotonic()
        with RssSampler({t.name: t.pid for t in targets}) as sampler:
            scenarios = await attack(registry, service, connections, seed, skip)
        figures["attack seconds"] = time.monotonic() - started
        await innocent.stop()
        await host.stop()
        figures["innocent"] = innocent.summary()
        if innocent.failures:
            failures.append(f"the innocent caller failed during the attack: {dict(innocent.failures)}")

        for target in targets:
            if not target.alive():
                failures.append(f"the {target.name} process died")
        if problem := await well_behaved(registry.port):
            failures.append(f"well-behaved host failed after the attack: {problem}")
        after = await settle_rss(targets, before, patience=30.0)
        for target in targets:
            grown = after.get(target.name, 0) / before[target.name] - 1
            figures[f"{target.name} RSS"] = (
                f"fresh {fresh[target.name] / 1024:.1f} MiB, after the well-behaved warm-up (before) "
                f"{before[target.name] / 1024:.1f} MiB, peak {sampler.peak[target.name] / 1024:.1f} MiB, "
                f"after {after.get(target.name, 0) / 1024:.1f} MiB ({grown:+.1%})"
            )
            figures[f"{target.name} log"] = f"{(target.log_bytes() - logs_before[target.name]) / 2**20:.1f} MiB"
            if grown > RSS_TOLERANCE:
                failures.append(f"{target.name} RSS is {grown:+.1%} of before (tolerance {RSS_TOLERANCE:.0%})")
        for scenario in scenarios:
            failures += [f"{scenario.name} -> {scenario.target}: {f}" for f in scenario.failures[:5]]
            if len(scenario.failures) > 5:
                failures.append(f"{scenario.name} -> {scenario.target}: {len(scenario.failures) - 5} more like these")
    finally:
        for target in targets:
            target.proc.stop()
    return scenarios, failures, figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=1_000_000, help="session inputs (default 1,000,000)")
    parser.add_argument("--workers", type=int, default=2, help="processes for the session phase (default 2)")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--connections", type=int, default=10_000, help="generated connections per target")
    parser.add_argument("--style", choices=["async", "sync"], default="async", help="the service's handlers")
    parser.add_argument(
        "--skip", default="", help=f"socket scenarios to leave out, comma-separated: {', '.join(SCENARIOS)}"
    )
    parser.add_argument(
        "--glibc-defaults", action="store_true", help="run the targets without TARGET_ENV's allocator setting"
    )
    args = parser.parse_args()
    started = time.monotonic()
    fd_limit = raise_fd_limit()
    print(
        f"fuzz_wire: seed {args.seed}, {args.inputs:,} session inputs on {args.workers} workers, "
        f"{args.connections:,} generated connections per target, {args.style} handlers, fd limit {fd_limit}"
    )

    report, failures = session_phase(args.inputs, args.workers, args.seed)
    print_session_report(report)

    print("\nSocket phase: a registry and a TCP service, real processes on 127.0.0.1")
    skip = {name for name in args.skip.split(",") if name}
    if not args.glibc_defaults:
        print(f"targets run with {' '.join(f'{k}={v}' for k, v in TARGET_ENV.items())} (see TARGET_ENV)")
    scenarios, socket_failures, figures = asyncio.run(
        socket_phase(args.connections, args.seed, args.style, skip, args.glibc_defaults)
    )
    failures += socket_failures
    for scenario in scenarios:
        print("  " + scenario.line())
    connections, frames = sum(s.connections for s in scenarios), sum(s.frames for s in scenarios)
    sent = sum(s.bytes_sent for s in scenarios) / 2**20
    print(f"  connections {connections:,}, frames {frames:,}, {sent:,.0f} MiB sent")
    for name, value in figures.items():
        print(f"  {name}: {value if isinstance(value, str) else f'{value:.1f}'}")

    print(f"\nElapsed {time.monotonic() - started:.0f} s; {len(failures)} failed checks")
    for failure in failures:
        print(f"  FAILED {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
