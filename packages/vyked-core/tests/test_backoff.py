"""One backoff policy and its loops; background task sets; rate-limited logging."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest

from vyked.core.backoff import DEFAULT_BACKOFF, Attempts, Backoff, reconnect_forever, retry
from vyked.core.logs import LOG_EVERY, log_count
from vyked.core.tasks import TaskSet

logger = logging.getLogger("vyked.tests.backoff")

FAST = Backoff(base=0.001, cap=0.002)
SAMPLES = 300


class LibraryError(Exception):
    """What a library turns a cancellation into (redis-py: its TimeoutError)."""


async def swallow_cancellation() -> None:
    """Sleep, and turn a cancellation into a library error, as redis-py can."""
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        raise LibraryError("converted") from None


# -- Backoff.compute --------------------------------------------------------------------------


@pytest.mark.parametrize("failures", [0, 1, 2, 3, 4, 5, 10, 31, 32, 33, 100, 10_000])
def test_compute_is_between_half_the_delay_and_the_delay(failures: int) -> None:
    backoff = Backoff(base=0.05, cap=1.0)
    delay = min(1.0, 0.05 * 2**failures) if failures < 64 else 1.0
    samples = [backoff.compute(failures) for _ in range(SAMPLES)]
    assert min(samples) >= delay / 2
    assert max(samples) <= delay
    assert len(set(samples)) > 1  # jittered


def test_compute_doubles_until_the_cap() -> None:
    backoff = Backoff(base=0.01, cap=0.64)
    for failures in range(6):  # 0.01 .. 0.32: every pause after n+1 failures is at least any after n
        assert min(backoff.compute(failures + 1) for _ in range(SAMPLES)) >= max(
            backoff.compute(failures) for _ in range(SAMPLES)
        )
    expected_upper = [0.01 * 2**n for n in range(7)]
    for failures, upper in enumerate(expected_upper):
        samples = [backoff.compute(failures) for _ in range(SAMPLES)]
        assert upper / 2 <= min(samples) and max(samples) <= upper


def test_compute_is_capped() -> None:
    backoff = Backoff(base=0.5, cap=2.0)
    for failures in (2, 3, 50, 10**6):
        samples = [backoff.compute(failures) for _ in range(SAMPLES)]
        assert min(samples) >= 1.0 and max(samples) <= 2.0


def test_default_backoff_is_what_docs_failures_md_promises() -> None:
    # "the host reconnects (50 ms to 0.5 s backoff ...)"
    assert (DEFAULT_BACKOFF.base, DEFAULT_BACKOFF.cap) == (0.05, 0.5)
    assert 0.025 <= DEFAULT_BACKOFF.compute(0) <= 0.05
    assert 0.25 <= DEFAULT_BACKOFF.compute(1000) <= 0.5


# -- retry ------------------------------------------------------------------------------------


async def test_retry_retries_the_given_errors_and_returns_the_value(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    async def operation() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionRefusedError(f"refused #{len(calls)}")
        return "up"

    with caplog.at_level(logging.DEBUG, logger=logger.name):
        assert await retry(operation, retry_on=OSError, backoff=FAST, logger=logger, what="dialling") == "up"
    assert len(calls) == 3
    assert "dialling failed (refused #1); retrying" in caplog.text
    assert "refused #2" in caplog.text


async def test_retry_accepts_a_tuple_of_errors() -> None:
    errors: list[BaseException] = [KeyError("k"), ValueError("v")]

    async def operation() -> int:
        if errors:
            raise errors.pop(0)
        return 7

    assert await retry(operation, retry_on=(KeyError, ValueError), backoff=FAST, logger=logger, what="x") == 7
    assert errors == []


async def test_retry_lets_other_errors_out_at_once() -> None:
    calls: list[int] = []

    async def operation() -> None:
        calls.append(1)
        raise ValueError("not retried")

    with pytest.raises(ValueError, match="not retried"):
        await retry(operation, retry_on=OSError, backoff=FAST, logger=logger, what="x")
    assert len(calls) == 1


async def test_retry_pauses_with_the_backoff() -> None:
    calls: list[float] = []

    async def operation() -> None:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise OSError("down")

    await retry(operation, retry_on=OSError, backoff=Backoff(base=0.1, cap=1.0), logger=logger, what="x")
    first_pause, second_pause = calls[1] - calls[0], calls[2] - calls[1]
    assert 0.05 <= first_pause < 0.5
    assert 0.1 <= second_pause < 0.8


async def test_retry_stops_when_cancelled_although_the_operation_swallowed_it() -> None:
    calls: list[int] = []

    async def operation() -> None:
        calls.append(1)
        await swallow_cancellation()

    task = asyncio.create_task(
        retry(operation, retry_on=LibraryError, backoff=Backoff(base=2.0, cap=2.0), logger=logger, what="x")
    )
    await asyncio.sleep(0.05)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert len(calls) == 1
    assert time.monotonic() - started < 0.5, "the backoff pause ran after a swallowed cancellation"


# -- reconnect_forever --------------------------------------------------------------------------


class Sessions:
    """A session function that records each call and follows a script of outcomes."""

    def __init__(self, script: list[Callable[[Attempts], object]], done_after: int) -> None:
        self.script = script
        self.failures_seen: list[int] = []
        self.done_after = done_after
        self.done = asyncio.Event()

    async def __call__(self, attempts: Attempts) -> None:
        index = len(self.failures_seen)
        self.failures_seen.append(attempts.failures)
        if len(self.failures_seen) >= self.done_after:
            self.done.set()
            await asyncio.sleep(10)  # the session stays "connected" until cancelled
        step = self.script[index % len(self.script)]
        step(attempts)


def returns(attempts: Attempts) -> None:
    return None


def raises_expected(attempts: Attempts) -> None:
    raise ConnectionResetError("reset by peer")


def raises_unexpected(attempts: Attempts) -> None:
    raise ZeroDivisionError("a bug in the session")


def succeeds_then_returns(attempts: Attempts) -> None:
    attempts.succeeded()


async def run_until_done(sessions: Sessions, backoff: Backoff = FAST) -> None:
    task = asyncio.create_task(
        reconnect_forever(sessions, retry_on=OSError, backoff=backoff, logger=logger, what="the test link")
    )
    try:
        await asyncio.wait_for(sessions.done.wait(), 5)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)


async def test_reconnect_forever_runs_the_session_again_after_it_returns_or_raises() -> None:
    sessions = Sessions([returns, raises_expected, returns, raises_expected], done_after=6)
    await run_until_done(sessions)
    assert len(sessions.failures_seen) == 6


async def test_failures_count_up_while_the_session_never_succeeds() -> None:
    sessions = Sessions([raises_expected], done_after=5)
    await run_until_done(sessions)
    assert sessions.failures_seen == [0, 1, 2, 3, 4]


async def test_succeeded_resets_the_failure_count() -> None:
    script = [raises_expected, raises_expected, succeeds_then_returns, raises_expected, raises_expected]
    sessions = Sessions(script, done_after=6)
    await run_until_done(sessions)
    # entry counts: 0, 1, 2 (succeeded: back to 0, +1 for the pause), 1, 2, 3
    assert sessions.failures_seen == [0, 1, 2, 1, 2, 3]


async def test_up_is_set_from_succeeded_until_the_session_ends() -> None:
    up = asyncio.Event()
    seen: list[tuple[str, bool]] = []
    proceed = asyncio.Event()
    calls: list[int] = []

    async def session(attempts: Attempts) -> None:
        calls.append(1)
        seen.append(("entered", up.is_set()))
        if len(calls) == 1:
            attempts.succeeded()
            seen.append(("succeeded", up.is_set()))
            await proceed.wait()
            raise ConnectionResetError("dropped")
        await asyncio.sleep(10)

    task = asyncio.create_task(
        reconnect_forever(session, retry_on=OSError, backoff=FAST, logger=logger, what="x", up=up)
    )
    await asyncio.wait_for(up.wait(), 5)
    proceed.set()
    while len(calls) < 2:
        await asyncio.sleep(0.005)
    assert not up.is_set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert seen == [("entered", False), ("succeeded", True), ("entered", False)]


async def test_unexpected_exceptions_are_logged_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    sessions = Sessions([raises_unexpected, raises_expected], done_after=4)
    with caplog.at_level(logging.DEBUG, logger=logger.name):
        await run_until_done(sessions)
    assert len(sessions.failures_seen) == 4
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2  # calls 1 and 3
    assert all("unexpected error in the test link" in r.getMessage() for r in errors)
    assert all(r.exc_info is not None and r.exc_info[0] is ZeroDivisionError for r in errors)
    expected = [r for r in caplog.records if r.levelno == logging.DEBUG and "reset by peer" in r.getMessage()]
    assert len(expected) == 1
    assert "the test link" in expected[0].getMessage()


async def test_reconnect_forever_stops_promptly_when_cancelled_in_the_session() -> None:
    sessions = Sessions([returns], done_after=1)
    task = asyncio.create_task(reconnect_forever(sessions, retry_on=OSError, backoff=FAST, logger=logger, what="x"))
    await asyncio.wait_for(sessions.done.wait(), 5)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert time.monotonic() - started < 0.2
    assert len(sessions.failures_seen) == 1


async def test_reconnect_forever_stops_promptly_when_cancelled_in_the_pause() -> None:
    calls: list[int] = []

    async def session(attempts: Attempts) -> None:
        calls.append(1)
        raise OSError("down")

    task = asyncio.create_task(
        reconnect_forever(session, retry_on=OSError, backoff=Backoff(base=5.0, cap=5.0), logger=logger, what="x")
    )
    await asyncio.sleep(0.05)  # now in a pause of 2.5 to 5 s
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert time.monotonic() - started < 0.2
    assert calls == [1]


@pytest.mark.parametrize("swallowed_as", [ConnectionResetError, LibraryError], ids=["expected", "unexpected"])
async def test_reconnect_forever_stops_when_the_session_swallows_the_cancellation(
    swallowed_as: type[Exception],
) -> None:
    calls: list[int] = []

    async def session(attempts: Attempts) -> None:
        calls.append(1)
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise swallowed_as("converted") from None

    task = asyncio.create_task(
        reconnect_forever(session, retry_on=OSError, backoff=Backoff(base=2.0, cap=2.0), logger=logger, what="x")
    )
    await asyncio.sleep(0.05)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert calls == [1]  # not run again
    assert time.monotonic() - started < 0.5, "the backoff pause ran after a swallowed cancellation"


async def test_reconnect_forever_with_a_swallowing_session_ends_within_the_default_cap() -> None:
    # the weaker guarantee every vyked loop relies on: it ends, within one default pause
    async def session(attempts: Attempts) -> None:
        await swallow_cancellation()

    task = asyncio.create_task(reconnect_forever(session, retry_on=LibraryError, logger=logger, what="x"))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, DEFAULT_BACKOFF.cap + 1)


# -- TaskSet ----------------------------------------------------------------------------------


async def test_taskset_keeps_tasks_until_they_end() -> None:
    tasks = TaskSet()
    release = asyncio.Event()

    async def work(value: int) -> int:
        await release.wait()
        return value

    spawned = [tasks.spawn(work(i)) for i in range(3)]
    assert len(tasks) == 3
    release.set()
    assert await asyncio.gather(*spawned) == [0, 1, 2]
    await asyncio.sleep(0)  # done callbacks run
    assert len(tasks) == 0
    await tasks.close()


async def test_taskset_close_cancels_running_tasks_only() -> None:
    tasks = TaskSet()
    finished = tasks.spawn(asyncio.sleep(0, result="done"))
    await finished
    cleaned_up: list[str] = []

    async def long_running() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            cleaned_up.append("cleanup")

    running = [tasks.spawn(long_running()) for _ in range(2)]
    await asyncio.sleep(0)
    started = time.monotonic()
    await tasks.close()
    assert time.monotonic() - started < 1
    assert all(t.cancelled() for t in running)
    assert cleaned_up == ["cleanup", "cleanup"]
    assert finished.result() == "done"
    assert len(tasks) == 0


async def test_taskset_close_collects_failures_without_raising() -> None:
    tasks = TaskSet()

    async def fails_on_cancel() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    task = tasks.spawn(fails_on_cancel())
    await asyncio.sleep(0)
    await tasks.close()  # does not raise, and asyncio does not report the exception as never retrieved
    assert isinstance(task.exception(), RuntimeError)


async def test_taskset_close_is_bounded_for_a_task_that_ignores_cancellation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = TaskSet()
    stop = asyncio.Event()

    async def stubborn() -> None:
        while not stop.is_set():
            try:
                await swallow_cancellation()
            except LibraryError:
                pass

    task = tasks.spawn(stubborn())
    await asyncio.sleep(0.01)
    started = time.monotonic()
    await tasks.close(timeout=0.2)
    assert 0.15 < time.monotonic() - started < 1
    assert not task.done()
    assert "ignored its cancellation" in caplog.text
    stop.set()
    task.cancel()
    await asyncio.wait_for(task, 2)


# -- log_count --------------------------------------------------------------------------------


def test_log_count_logs_the_first_and_every_thousandth(caplog: pytest.LogCaptureFixture) -> None:
    assert LOG_EVERY == 1000
    with caplog.at_level(logging.DEBUG, logger=logger.name):
        for count in range(1, 2 * LOG_EVERY + 1 + 998):
            log_count(logger, count, "dropped %d events", count)
    records = [r for r in caplog.records if r.name == logger.name]
    assert [r.getMessage() for r in records] == ["dropped 1 events", "dropped 1000 events", "dropped 2000 events"]
    assert all(r.levelno == logging.WARNING for r in records)


def test_log_count_uses_the_given_level(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger=logger.name):
        log_count(logger, 1, "first", level=logging.ERROR)
        log_count(logger, 2, "second", level=logging.ERROR)
        log_count(logger, 3000, "third", level=logging.INFO)
    assert [(r.getMessage(), r.levelno) for r in caplog.records] == [("first", logging.ERROR), ("third", logging.INFO)]
