"""Noticing a blocked event loop, and saying where it is stuck: :class:`LoopWatchdog`.

Liveness in vyked is the event loop answering heartbeats (see ``docs/failures.md``, "Blocking
handlers and liveness"): an ``async def`` handler that blocks the loop (``time.sleep``, a
blocking driver, a long computation) stops every heartbeat of its process, and if it blocks
long enough the registry and every caller take the instance for dead. Plain ``def`` handlers
run in threads (:mod:`vyked.core.threads`) and cannot do this; for the rest the watchdog tells
the user which code is to blame before the eviction does.

The loop stamps the time every ``threshold / 5`` seconds; a daemon thread checks the stamp
as often. When the loop has not stamped for more than ``threshold`` seconds, the thread logs
one WARNING for that stall, naming how long the loop has been blocked so far and the stack
of the loop's thread at that moment (:func:`sys._current_frames`); when the loop runs again it
logs (INFO) how long the stall lasted in all. Cheap: one timer callback per interval.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5
"""Seconds the loop may go without running its timers before the watchdog speaks."""


class LoopWatchdog:
    """Watches ``loop``: ``LoopWatchdog(loop).start()`` ... ``stop()``.

    ``start`` and ``stop`` may be called from any thread, ``stop`` more than once. ``stalls``
    counts the stalls seen and ``last_stall`` is the length of the last one that ended.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, threshold: float = DEFAULT_THRESHOLD, *, name: str = ""
    ) -> None:
        if threshold <= 0:
            raise ValueError(f"threshold must be positive, got {threshold!r}")
        self.loop = loop
        self.threshold = threshold
        self.name = name
        self.interval = threshold / 5
        self.stalls = 0
        self.last_stall = 0.0
        self._stamp: float | None = None
        self._loop_thread: int | None = None
        self._reported: float | None = None
        """The stamp of the stall reported last: one warning per stall."""
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._stopped.is_set()

    def start(self) -> None:
        if self._thread is not None:
            return
        try:
            in_loop = asyncio.get_running_loop() is self.loop
        except RuntimeError:
            in_loop = False
        if in_loop:
            self._tick()  # watching from now on, even if the caller blocks next
        else:
            self.loop.call_soon_threadsafe(self._tick)
        self._thread = threading.Thread(target=self._watch, name="vyked-loop-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)

    # -- in the loop -----------------------------------------------------------------------------

    def _tick(self) -> None:
        if self._stopped.is_set():
            return
        now = time.monotonic()
        previous = self._stamp
        if previous is None:
            self._loop_thread = threading.get_ident()
        elif self._reported == previous:  # the stall the watcher reported is over
            self.last_stall = now - previous
            logger.info("%s ran again after being blocked for %.2f s", self._what(), self.last_stall)
        self._stamp = now
        self.loop.call_later(self.interval, self._tick)

    # -- in the watchdog's thread ------------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stopped.wait(self.interval):
            stamp = self._stamp
            if stamp is None or stamp == self._reported:
                continue
            blocked = time.monotonic() - stamp
            if blocked > self.threshold:
                self._reported = stamp
                self.stalls += 1
                logger.warning(
                    "%s has been blocked for %.2f s (watchdog threshold %.2f s): a callback or an async "
                    "handler is not yielding; heartbeats stop while it blocks. Its thread is at:\n%s",
                    self._what(),
                    blocked,
                    self.threshold,
                    self._loop_stack(),
                )

    def _loop_stack(self) -> str:
        frame = sys._current_frames().get(self._loop_thread) if self._loop_thread is not None else None
        if frame is None:
            return "  (the loop's thread is gone)"
        return "".join(traceback.format_stack(frame)).rstrip()

    def _what(self) -> str:
        return f"event loop of {self.name}" if self.name else "event loop"

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<LoopWatchdog {self.name or hex(id(self.loop))} threshold={self.threshold} s {state}>"


_shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[LoopWatchdog, int]] = weakref.WeakKeyDictionary()


def watch_running_loop(name: str = "") -> Callable[[], None]:
    """Watch the running loop with one :class:`LoopWatchdog` shared by everything in it (hosts
    of a test share a loop); returns the function that stops watching for this caller."""
    loop = asyncio.get_running_loop()
    watchdog, users = _shared.get(loop, (None, 0))
    if watchdog is None:
        watchdog = LoopWatchdog(loop, name=name)
        watchdog.start()
    _shared[loop] = (watchdog, users + 1)
    released = False

    def release() -> None:
        nonlocal released
        if released:
            return
        released = True
        current, left = _shared.get(loop, (None, 0))
        if current is not watchdog:
            return
        if left <= 1:
            del _shared[loop]
            watchdog.stop()
        else:
            _shared[loop] = (watchdog, left - 1)

    return release
