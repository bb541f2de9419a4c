"""The host's HTTP connection pool: one :class:`aiohttp.ClientSession` for every HTTP client of a
host process, closed when the host stops.

Besides the session it remembers, briefly, which instances refused connections, so that
balancing skips them (the registry only forgets an instance when its host's registry
connection drops, which lags a crash).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container

import aiohttp

from vyked.core.host import ServiceHost
from vyked.core.instances import Instance

UNREACHABLE_BACKOFF = 1.0
"""Seconds an instance that refused a connection is skipped by balancing."""


class HTTPClientPool:
    """A host extension (``host.extension(HTTPClientPool.KEY, HTTPClientPool)``)."""

    KEY = "vyked.http.pool"

    def __init__(self, host: ServiceHost) -> None:
        self.host = host
        self.session = aiohttp.ClientSession()
        self._unreachable: dict[str, float] = {}

    def mark_unreachable(self, instance: Instance) -> None:
        """Skip ``instance`` in balancing for :data:`UNREACHABLE_BACKOFF` seconds."""
        self._unreachable[instance.node_id] = time.monotonic() + UNREACHABLE_BACKOFF

    def usable_filter(self, tried: Container[str] = ()) -> Callable[[Instance], bool] | None:
        """A predicate for :meth:`InstanceDirectory.select
        <vyked.core.instances.InstanceDirectory.select>` excluding instances that refused
        connections lately or were ``tried`` already; None when nothing is excluded."""
        unreachable = self._unreachable
        if unreachable:
            now = time.monotonic()
            for node_id, until in list(unreachable.items()):
                if until <= now:
                    del unreachable[node_id]
        if not unreachable and not tried:
            return None
        return lambda instance: instance.node_id not in unreachable and instance.node_id not in tried

    async def close(self) -> None:
        """Close the session and its connections (the host does this when it stops)."""
        await self.session.close()
