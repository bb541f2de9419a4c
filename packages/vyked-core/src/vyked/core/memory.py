"""Giving memory back to the operating system after a burst of connections.

CPython frees the objects of a closed connection at once, but glibc's allocator keeps the
freed pages mapped wherever a few live objects are scattered among them, so a process that
served ten thousand short connections (an attack, or a reconnect storm) stays as large as
at its peak. ``malloc_trim(0)`` returns every wholly free page of every arena to the system.
It costs a few milliseconds, so a server asks for it once a burst is over, not per connection.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import sys
from collections.abc import Callable

RELEASE_AFTER_CLOSED = 16
"""Connections that must have closed since the last release before another is worth it."""
RELEASE_WHEN_QUIET = 1.0
"""Seconds without a connection closing that mark the end of a burst."""


def _find_malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)  # glibc only; musl has none
    if trim is None:
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim  # type: ignore[no-any-return]


_malloc_trim = _find_malloc_trim()


def release_free_memory() -> None:
    """Collect garbage cycles, then return the allocator's free pages (a no-op beyond glibc)."""
    gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)


class MemoryReleaser:
    """Calls :func:`release_free_memory` once a burst of closed connections is over.

    A burst is over when ``after_closed`` connections have closed since the last release and
    none has closed for ``quiet`` seconds.
    """

    def __init__(self, after_closed: int = RELEASE_AFTER_CLOSED, quiet: float = RELEASE_WHEN_QUIET) -> None:
        self.after_closed = after_closed
        self.quiet = quiet
        self.releases = 0
        self._closed = 0
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = False

    def connection_closed(self) -> None:
        """Count one closed connection (called from the event loop)."""
        self._closed += 1
        if self._closed < self.after_closed or self._stopped:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self.quiet, self._release)

    def _release(self) -> None:
        self._timer = None
        self._closed = 0
        self.releases += 1
        release_free_memory()

    def cancel(self) -> None:
        """Forget a pending release and schedule no more (the server is closing)."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
