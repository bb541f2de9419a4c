"""The handler thread pool, the in-flight tracker and the loop watchdog, with real threads."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time

import pytest

from vyked.core import threads
from vyked.core.exceptions import ConfigurationError, Draining, Overloaded
from vyked.core.handler_styles import Execution, execution_of
from vyked.core.inflight import InFlight, concurrency_limit
from vyked.core.threads import HandlerPool, call_on_loop, configure, default_pool, pool_size_from_env, run_in_thread
from vyked.core.watchdog import LoopWatchdog

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


# -- where handlers run --------------------------------------------------------------------------


def test_plain_handlers_go_to_threads_unless_inline_and_coroutines_stay_on_the_loop() -> None:
    def plain() -> None: ...

    async def coroutine() -> None: ...

    def generator() -> object:
        yield from asyncio.sleep(0)

    assert execution_of(plain) is Execution.THREAD
    assert execution_of(plain, inline=True) is Execution.INLINE
    assert execution_of(coroutine) is Execution.LOOP
    assert execution_of(coroutine, inline=True) is Execution.LOOP
    assert execution_of(generator) is Execution.LOOP


# -- the pool --------------------------------------------------------------------------------------


async def test_calls_run_in_named_daemon_threads_with_the_callers_context() -> None:
    def where(x: int) -> tuple[str, bool, str, int]:
        thread = threading.current_thread()
        return thread.name, thread.daemon, request_id.get(), x * 2

    request_id.set("req-42")
    name, daemon, seen, doubled = await HandlerPool(2).submit(where, 21)
    assert name.startswith("vyked-handler-") and name != threading.current_thread().name
    assert daemon
    assert seen == "req-42"
    assert doubled == 42


async def test_context_changes_in_the_thread_stay_in_the_thread() -> None:
    def change() -> None:
        request_id.set("changed in the thread")

    request_id.set("mine")
    await run_in_thread(change)
    assert request_id.get() == "mine"


async def test_exceptions_reach_the_caller() -> None:
    def fail() -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError, match="missing"):
        await HandlerPool(1).submit(fail)
    with pytest.raises(RuntimeError, match="StopIteration"):  # which a future cannot carry
        await HandlerPool(1).submit(next, iter(()))


async def test_no_more_threads_than_the_size_and_the_rest_wait_their_turn() -> None:
    pool = HandlerPool(3)
    lock = threading.Lock()
    running = peak = 0

    def work(n: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return n

    results = await asyncio.gather(*(pool.submit(work, n) for n in range(12)))
    assert results == list(range(12))
    assert peak == 3
    assert pool.threads == 3


async def test_a_blocking_call_leaves_the_loop_free() -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    started = time.monotonic()
    await HandlerPool(1).submit(time.sleep, 0.5)
    ticker.cancel()
    assert time.monotonic() - started >= 0.5
    assert ticks >= 20  # ~45 if the loop ran all along, 0 or 1 had the sleep blocked it


async def test_idle_threads_end_and_new_work_starts_new_ones() -> None:
    pool = HandlerPool(2, idle_timeout=0.1)
    first = await asyncio.gather(pool.submit(threading.get_ident), pool.submit(time.sleep, 0.05))
    assert pool.threads >= 1
    async with asyncio.timeout(5):
        while pool.threads:
            await asyncio.sleep(0.02)
    # after every thread has gone, a call still gets a (new) thread
    assert await pool.submit(lambda: "still served") == "still served"
    assert first[1] is None


async def test_a_smaller_size_lets_the_surplus_threads_go() -> None:
    pool = HandlerPool(4)
    gate = threading.Event()
    calls = [pool.submit(gate.wait, 5) for _ in range(4)]
    async with asyncio.timeout(5):
        while pool.threads < 4:
            await asyncio.sleep(0.01)
    pool.size = 1
    gate.set()
    await asyncio.gather(*calls)
    async with asyncio.timeout(5):
        while pool.threads > 1:
            await asyncio.sleep(0.01)
    assert await pool.submit(lambda: 7) == 7


async def test_a_call_cancelled_before_it_starts_never_runs() -> None:
    pool = HandlerPool(1)
    gate = threading.Event()
    started = threading.Event()
    ran: list[str] = []

    def busy_call() -> None:
        started.set()
        gate.wait(5)

    busy = pool.submit(busy_call)
    await asyncio.to_thread(started.wait, 5)
    queued = pool.submit(ran.append, "queued")
    assert pool.queued == 1
    queued.cancel()
    gate.set()
    await busy
    assert await pool.submit(lambda: "after") == "after"
    assert ran == []


async def test_call_on_loop_runs_in_the_loops_thread() -> None:
    loop_thread = threading.get_ident()

    def from_thread() -> tuple[int, int]:
        return threading.get_ident(), call_on_loop(threading.get_ident)

    handler_thread, called_in = await run_in_thread(from_thread)
    assert handler_thread != loop_thread
    assert called_in == loop_thread
    assert call_on_loop(threading.get_ident) == loop_thread  # on the loop: a plain call


def test_size_from_the_environment_and_configure(monkeypatch: pytest.MonkeyPatch) -> None:
    assert pool_size_from_env({}) == 40
    assert pool_size_from_env({"VYKED_THREAD_POOL_SIZE": "8"}) == 8
    for bad in ("0", "-3", "many"):
        with pytest.raises(ConfigurationError, match="VYKED_THREAD_POOL_SIZE"):
            pool_size_from_env({"VYKED_THREAD_POOL_SIZE": bad})
    pool = default_pool()
    before = pool.size
    try:
        configure(3)
        assert default_pool() is pool and pool.size == 3
    finally:
        configure(before)
    with pytest.raises(ValueError):
        configure(0)


def test_a_fresh_process_pool_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "_default", None)
    monkeypatch.setattr(threads, "_configured", None)
    monkeypatch.setenv("VYKED_THREAD_POOL_SIZE", "5")
    assert default_pool().size == 5


# -- in flight -------------------------------------------------------------------------------------


async def test_in_flight_refuses_over_its_limit_and_when_draining() -> None:
    tracker = InFlight("Svc.op", 2)
    assert tracker.refusal() is None
    tracker.enter()
    tracker.enter()
    refusal = tracker.refusal()
    assert isinstance(refusal, Overloaded) and refusal.not_executed
    assert "max_concurrency=2" in str(refusal)
    tracker.exit()
    assert tracker.refusal() is None
    tracker.start_draining()
    refusal = tracker.refusal()
    assert isinstance(refusal, Draining) and refusal.not_executed


async def test_drained_waits_for_zero_or_the_grace_period() -> None:
    tracker = InFlight("Svc")
    assert await tracker.drained(0.1) == 0
    tracker.enter()
    tracker.enter()
    started = time.monotonic()
    assert await tracker.drained(0.2) == 2  # nothing finished: the grace period ran out
    assert time.monotonic() - started >= 0.2 - 0.002  # uvloop's timers (libuv's ms clock) may fire 1 ms early
    loop = asyncio.get_running_loop()
    loop.call_later(0.1, tracker.exit)
    loop.call_later(0.2, tracker.exit)
    started = time.monotonic()
    assert await tracker.drained(5) == 0
    assert 0.15 < time.monotonic() - started < 2


def test_concurrency_limit_from_argument_or_environment() -> None:
    assert concurrency_limit(None, {}) is None
    assert concurrency_limit(None, {"VYKED_MAX_CONCURRENCY": "16"}) == 16
    assert concurrency_limit(4, {"VYKED_MAX_CONCURRENCY": "16"}) == 4
    with pytest.raises(ConfigurationError, match="VYKED_MAX_CONCURRENCY"):
        concurrency_limit(None, {"VYKED_MAX_CONCURRENCY": "lots"})
    with pytest.raises(ValueError):
        InFlight("Svc", 0)


# -- the watchdog ----------------------------------------------------------------------------------


def a_handler_that_blocks_the_loop(seconds: float) -> None:
    time.sleep(seconds)


async def test_watchdog_names_a_stall_and_the_code_causing_it(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="vyked.core.watchdog")
    watchdog = LoopWatchdog(asyncio.get_running_loop(), threshold=0.3, name="TestHost")
    watchdog.start()
    try:
        await asyncio.sleep(0.3)  # a healthy loop: nothing to say
        assert watchdog.stalls == 0
        a_handler_that_blocks_the_loop(1.0)
        await asyncio.sleep(0.3)  # the loop runs its timers again
    finally:
        watchdog.stop()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]  # one per stall
    message = warnings[0].getMessage()
    assert "event loop of TestHost has been blocked for 0." in message
    assert "a_handler_that_blocks_the_loop" in message  # the stack of the loop's thread
    assert "time.sleep(seconds)" in message
    assert watchdog.stalls == 1
    assert 0.9 < watchdog.last_stall < 1.6
    ended = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("ran again after being blocked for" in m for m in ended)


async def test_watchdog_reports_each_stall_and_stops() -> None:
    watchdog = LoopWatchdog(asyncio.get_running_loop(), threshold=0.2)
    watchdog.start()
    for _ in range(2):
        a_handler_that_blocks_the_loop(0.5)
        await asyncio.sleep(0.15)
    watchdog.stop()
    assert watchdog.stalls == 2
    assert not watchdog.running
    a_handler_that_blocks_the_loop(0.5)  # stopped: no longer watching
    await asyncio.sleep(0.1)
    assert watchdog.stalls == 2
