"""Safe retries, circuit breakers, least-outstanding balancing and draining, over a real
registry and real sockets: what a caller sees when instances are slow, failing or leaving."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any

import pytest

from vyked import TCPService, TCPServiceClient, api, request
from vyked.core.exceptions import ConnectionLost
from vyked.core.pytest_plugin import HostFactory
from vyked.core.service_host import ServiceHost


class Flaky(TCPService):
    """Answers ``work`` after ``delay`` seconds, or misbehaves as ``mode`` says."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__("Flaky", 1, "127.0.0.1", 0)
        self.delay = delay
        self.mode = "ok"
        self.calls = 0

    @api
    async def work(self, n: int) -> dict[str, Any]:
        self.calls += 1
        if self.mode == "drop":  # the connection dies with the request in flight
            assert self._server is not None
            for conn in list(self._server.connections):
                conn.abort()
            await asyncio.sleep(1)
        elif self.mode == "hang":
            await asyncio.sleep(1)
        await asyncio.sleep(self.delay)
        return {"n": n, "node": self.node_id}


class FlakyClient(TCPServiceClient):
    def __init__(self, balancing: str | None = None) -> None:
        super().__init__("Flaky", 1, balancing=balancing)

    @request(timeout=2)
    def work(self, n: int) -> dict[str, Any]:
        return locals()


class IdempotentFlakyClient(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__("Flaky", 1)

    @request(timeout=2, idempotent=True)
    def work(self, n: int) -> dict[str, Any]:
        return locals()


class QuickFlakyClient(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__("Flaky", 1, balancing="round_robin")

    @request(timeout=0.2)
    def work(self, n: int) -> dict[str, Any]:
        return locals()


async def two_instances(vyked_host: HostFactory, a: Flaky, b: Flaky, client: TCPServiceClient) -> ServiceHost:
    await vyked_host(a)
    await vyked_host(b)
    host = await vyked_host(clients=(client,))
    await host.watch("Flaky")
    assert len(host.directory.instances("Flaky")) == 2
    return host


async def share_of_fast(client: FlakyClient, fast: Flaky, in_flight: int, seconds: float) -> tuple[float, int]:
    served: collections.Counter[str] = collections.Counter()
    stop_at = time.monotonic() + seconds

    async def caller() -> None:
        n = 0
        while time.monotonic() < stop_at:
            n += 1
            served[(await client.work(n))["node"]] += 1

    await asyncio.gather(*(caller() for _ in range(in_flight)))
    total = sum(served.values())
    return served[fast.node_id] / total, total


async def test_least_outstanding_sends_most_calls_to_the_fast_instance(vyked_host: HostFactory) -> None:
    slow, fast = Flaky(delay=0.05), Flaky(delay=0.001)
    least, round_robin = FlakyClient(), FlakyClient(balancing="round_robin")
    await vyked_host(slow)
    await vyked_host(fast)
    await vyked_host(clients=(least, round_robin))
    assert least.balancing == "least_outstanding"  # the default
    share, total = await share_of_fast(least, fast, in_flight=32, seconds=1.5)
    rr_share, rr_total = await share_of_fast(round_robin, fast, in_flight=32, seconds=1.5)
    print(
        f"\n32 calls in flight, instances answering in 50 ms and 1 ms: least outstanding sent {share:.1%} "
        f"of {total} calls to the fast one, round-robin {rr_share:.1%} of {rr_total}"
    )
    assert share >= 0.8
    assert rr_share < 0.6  # round-robin ignores load: the comparison is meaningful


async def test_an_unknown_balancing_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown balancing 'fastest'; choose one of least_outstanding, round_robin"):
        FlakyClient(balancing="fastest")


async def test_a_request_lost_in_flight_is_not_sent_again_unless_idempotent(vyked_host: HostFactory) -> None:
    a, b = Flaky(), Flaky()
    client, idempotent = FlakyClient(balancing="round_robin"), IdempotentFlakyClient()
    host = await two_instances(vyked_host, a, b, client)
    host.bind_client(idempotent)
    a.mode = b.mode = "drop"
    with pytest.raises(ConnectionLost, match="closed with the request in flight"):
        await client.work(1)
    assert a.calls + b.calls == 1  # it may have run: not sent again

    a.mode, b.mode = "drop", "ok"
    answers = [await idempotent.work(n) for n in range(4)]
    assert all(answer["node"] == b.node_id for answer in answers)  # every drop on A went to B
    assert a.calls >= 1  # some went to A, whose connection then died


async def test_consecutive_timeouts_open_the_circuit_then_a_probe_closes_it(
    vyked_host: HostFactory, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = Flaky(), Flaky()
    client = QuickFlakyClient()
    host = await two_instances(vyked_host, a, b, client)
    health = host.directory.health
    health.cool_off = 0.5
    a.mode = "hang"
    caplog.set_level(logging.INFO, logger="vyked.core.health")
    outcomes = []
    for n in range(16):
        try:
            outcomes.append((await client.work(n))["node"])
        except TimeoutError:
            outcomes.append("timeout")
    assert outcomes.count("timeout") == health.failure_threshold, [
        {a.node_id: "A", b.node_id: "B"}.get(o, o) for o in outcomes
    ]  # then A is skipped
    assert outcomes[-4:] == [b.node_id] * 4
    assert health.state(a.node_id) == "open"
    assert f"circuit of Flaky at 127.0.0.1:{a.host_port} is open: 5 failures in a row" in caplog.text

    a.mode = "ok"
    await asyncio.sleep(0.6)  # cool-off over: the next request to A is a probe
    nodes = {(await client.work(n))["node"] for n in range(4)}
    assert nodes == {a.node_id, b.node_id}
    assert health.state(a.node_id) == "closed"
    assert health.transitions == {"open": 1, "half_open": 1, "closed": 1}


async def test_a_draining_host_finishes_its_requests_while_others_take_new_ones(vyked_host: HostFactory) -> None:
    a, b = Flaky(delay=0.3), Flaky()
    client = FlakyClient(balancing="round_robin")
    await vyked_host(b)
    host_a = await vyked_host(a)
    caller = await vyked_host(clients=(client,))
    await caller.watch("Flaky")
    in_flight = [asyncio.ensure_future(client.work(n)) for n in range(4)]  # 2 of them on A
    await asyncio.sleep(0.05)
    stopping = asyncio.ensure_future(host_a.stop())
    await asyncio.sleep(0.05)
    assert a.node_id not in {i.node_id for i in caller.directory.instances("Flaky")}  # deregistered at once
    during = [await client.work(n) for n in range(10, 14)]
    assert {answer["node"] for answer in during} == {b.node_id}
    answers = await asyncio.gather(*in_flight)
    assert sorted(answer["n"] for answer in answers) == [0, 1, 2, 3]
    assert {answer["node"] for answer in answers} == {a.node_id, b.node_id}  # A finished its two
    await stopping
