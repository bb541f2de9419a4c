"""Publish-subscribe through vyked against raw redis-py publish/subscribe, in the same run.

A throwaway redis-server (``vyked.core.testing.RedisServer``) and an in-process vyked
registry on 127.0.0.1; publisher and subscribers share this process, Redis has its own.

- throughput: events per second from the first publish until every subscriber has handled
  every event; publishers send in batches of ``BATCH`` and wait for Redis to take each batch
  (raw: one pipeline of PUBLISHes; vyked: ``@publish`` calls, then ``PubSub.flush()``)
- latency: publish-to-handler time of events sent one per millisecond; p50 / p99

Rows: raw redis-py, vyked over Redis, vyked embedded (no Redis); with 1 and 10 subscribers.
The ratio column is events per second against raw redis-py with as many subscribers.
Run: ``python bench/bench_pubsub.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as redis

from vyked import ServiceHost, TCPService, TCPServiceClient, publish, subscribe
from vyked.core.testing import RedisServer
from vyked.registry import Registry
from vyked.tcp.pubsub import PubSub

BATCH = 256
LATENCY_EVENTS = 1000
CHANNEL = "bench:events"


class Counter:
    """What one subscriber saw."""

    def __init__(self) -> None:
        self.count = 0
        self.latencies: list[float] = []
        self.measure_latency = False
        self.done = asyncio.Event()
        self.expected = 0

    def hit(self, sent_at: float) -> None:
        self.count += 1
        if self.measure_latency:
            self.latencies.append(time.perf_counter() - sent_at)
        if self.count >= self.expected:
            self.done.set()

    def expect(self, count: int, latency: bool) -> None:
        self.count = 0
        self.expected = count
        self.latencies = []
        self.measure_latency = latency
        self.done.clear()


# -- raw redis-py ------------------------------------------------------------------------------


async def raw_scenario(url: str, subscribers: int) -> Scenario:
    client = redis.Redis.from_url(url)
    counters = [Counter() for _ in range(subscribers)]
    pubsubs = []
    tasks = []
    for counter in counters:
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(CHANNEL)
        pubsubs.append(pubsub)
        tasks.append(asyncio.create_task(_raw_listen(pubsub, counter)))
    for pubsub in pubsubs:  # each has its subscribe confirmation once it listens
        while not pubsub.subscribed:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    while (await client.pubsub_numsub(CHANNEL))[0][1] < subscribers:  # noqa: ASYNC110
        await asyncio.sleep(0.01)

    async def send_batch(events: list[bytes]) -> None:
        pipe = client.pipeline(transaction=False)
        for event in events:
            pipe.publish(CHANNEL, event)
        await pipe.execute()

    async def send_one(event: bytes) -> None:
        await client.publish(CHANNEL, event)

    async def close() -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for pubsub in pubsubs:
            await pubsub.aclose()
        await client.aclose()

    return Scenario(counters, send_batch, send_one, close, encode=True)


async def _raw_listen(pubsub: Any, counter: Counter) -> None:
    async for message in pubsub.listen():
        counter.hit(json.loads(message["data"])["t"])


# -- vyked -------------------------------------------------------------------------------------


class Ticker(TCPService):
    def __init__(self) -> None:
        super().__init__("Ticker", 1, "127.0.0.1", 0)

    @publish
    def tick(self, n: int, t: float, user: str) -> dict[str, Any]:
        return locals()


class TickerClient(TCPServiceClient):
    def __init__(self, counter: Counter) -> None:
        super().__init__("Ticker", 1)
        self.counter = counter

    @subscribe(inline=True)  # on the loop: the counter is not thread-safe, and threads would be measured
    def tick(self, n: int, t: float, user: str) -> None:
        self.counter.hit(t)


async def vyked_scenario(registry_port: int, url: str | None, subscribers: int) -> Scenario:
    registry = f"127.0.0.1:{registry_port}"
    ticker = Ticker()
    publisher = ServiceHost(registry, pubsub=url)
    publisher.attach(ticker)
    await publisher.start()
    hub = PubSub.of(publisher)
    counters = [Counter() for _ in range(subscribers)]
    hosts = [publisher]
    for counter in counters:
        host = ServiceHost(registry, pubsub=url)
        host.bind_client(TickerClient(counter))
        await host.start()
        hosts.append(host)

    async def send_batch(events: list[dict[str, Any]]) -> None:
        for event in events:
            ticker.tick(**event)
        await hub.flush()

    async def send_one(event: dict[str, Any]) -> None:
        ticker.tick(**event)
        await hub.flush()

    async def close() -> None:
        for host in reversed(hosts):
            await host.stop()

    return Scenario(counters, send_batch, send_one, close, encode=False)


# -- measuring ---------------------------------------------------------------------------------


class Scenario:
    def __init__(
        self,
        counters: list[Counter],
        send_batch: Callable[[Any], Awaitable[None]],
        send_one: Callable[[Any], Awaitable[None]],
        close: Callable[[], Awaitable[None]],
        encode: bool,
    ) -> None:
        self.counters = counters
        self.send_batch = send_batch
        self.send_one = send_one
        self.close = close
        self.encode = encode

    def event(self, n: int) -> Any:
        event = {"n": n, "t": time.perf_counter(), "user": "ann"}
        return json.dumps(event).encode() if self.encode else event

    async def throughput(self, events: int) -> float:
        for counter in self.counters:
            counter.expect(events, latency=False)
        start = time.perf_counter()
        for first in range(0, events, BATCH):
            await self.send_batch([self.event(n) for n in range(first, min(first + BATCH, events))])
        await self._all_done()
        return events / (time.perf_counter() - start)

    async def latency(self, events: int) -> tuple[float, float]:
        for counter in self.counters:
            counter.expect(events, latency=True)
        for n in range(events):
            await self.send_one(self.event(n))
            await asyncio.sleep(0.001)
        await self._all_done()
        samples = sorted(s for c in self.counters for s in c.latencies)
        quantiles = statistics.quantiles(samples, n=100)
        return quantiles[49] * 1e6, quantiles[98] * 1e6

    async def _all_done(self) -> None:
        async with asyncio.timeout(60):
            await asyncio.gather(*(c.done.wait() for c in self.counters))


async def measure(make: Callable[[], Awaitable[Scenario]], events: int) -> tuple[float, float, float]:
    scenario = await make()
    try:
        await scenario.throughput(min(events, 2000))  # warm-up
        rate = max([await scenario.throughput(events) for _ in range(2)])
        p50, p99 = await scenario.latency(LATENCY_EVENTS)
    finally:
        await scenario.close()
    return rate, p50, p99


async def main(quick: bool) -> int:
    scale = 0.2 if quick else 1.0
    rows: list[tuple[str, int, float, float, float, float]] = []
    with RedisServer() as server:
        async with Registry("127.0.0.1", 0) as registry:
            for subscribers, events in ((1, 20_000), (10, 4_000)):
                events = int(events * scale)
                raw = await measure(lambda s=subscribers: raw_scenario(server.url, s), events)
                over_redis = await measure(lambda s=subscribers: vyked_scenario(registry.port, server.url, s), events)
                embedded = await measure(lambda s=subscribers: vyked_scenario(registry.port, None, s), events)
                for name, (rate, p50, p99) in (
                    ("raw redis-py", raw),
                    ("vyked over Redis", over_redis),
                    ("vyked embedded", embedded),
                ):
                    rows.append((name, subscribers, rate, rate / raw[0], p50, p99))
    print()
    print(f"{'transport':<18} {'subs':>4} {'events/s':>10} {'vs raw':>7} {'p50 µs':>8} {'p99 µs':>8}")
    for name, subscribers, rate, ratio, p50, p99 in rows:
        print(f"{name:<18} {subscribers:>4} {rate:>10,.0f} {ratio:>6.0%} {p50:>8,.0f} {p99:>8,.0f}")
    worst = min(ratio for name, _, _, ratio, _, _ in rows if name == "vyked over Redis")
    print(f"\nvyked over Redis: {worst:.0%} of raw redis-py throughput at worst (target: 70%)")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fifth of the events, for a smoke run")
    sys.exit(asyncio.run(main(parser.parse_args().quick)))
