"""Retry loops stop even when a library swallows their cancellation."""

from __future__ import annotations

import asyncio
import time

import pytest

from vyked.core.tasks import cancel_and_wait, raise_if_cancelling


class LibraryError(Exception):
    """What a library turns a cancellation into (redis-py: its TimeoutError)."""


async def swallowing_call() -> None:
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        raise LibraryError("converted") from None


async def retry_loop(rounds: list[int], guarded: bool, running: list[bool] | None = None) -> None:
    while running is None or running[0]:
        if guarded:
            raise_if_cancelling()
        rounds.append(1)
        try:
            await swallowing_call()
        except LibraryError:
            pass
        await asyncio.sleep(0.01)


async def test_a_guarded_loop_stops_on_cancel_although_the_call_swallowed_it() -> None:
    rounds: list[int] = []
    task = asyncio.create_task(retry_loop(rounds, guarded=True))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)
    assert len(rounds) == 1


async def test_cancel_and_wait_is_bounded_for_a_task_that_ignores_cancellation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rounds: list[int] = []
    running = [True]
    unguarded = asyncio.create_task(retry_loop(rounds, guarded=False, running=running))
    well_behaved = asyncio.create_task(asyncio.sleep(10))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await cancel_and_wait(unguarded, well_behaved, None, timeout=0.3)
    assert 0.25 < time.monotonic() - started < 2
    assert well_behaved.cancelled()
    assert not unguarded.done()  # left behind, and said so
    assert "ignored its cancellation" in caplog.text
    assert len(rounds) >= 2  # it kept looping: what the guard prevents
    running[0] = False  # it ignores cancellation; end it the only way it listens to
    unguarded.cancel()  # wakes it from its sleep; swallowed again, then the flag ends it
    await asyncio.wait_for(unguarded, 2)
