"""The host's HTTP connection pool: one :class:`aiohttp.ClientSession` for every HTTP client of
a host process, made on first use and closed when the host stops (``host.extension(POOL)``)."""

from __future__ import annotations

import ssl
from collections import Counter

import aiohttp

from vyked.core.extensions import ExtensionKey, HostExtension
from vyked.core.service_host import ServiceHost


class HTTPClientPool(HostExtension):
    """Holds the host's :class:`aiohttp.ClientSession` and its keep-alive connections."""

    def __init__(self, host: ServiceHost) -> None:
        self.host = host
        # No aiohttp timeouts: a request's timeout covers finding an instance, connecting and
        # reading the whole answer, and ServiceClient.call enforces it around all three.
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout())
        self.ssl_context: ssl.SSLContext = host.trust.connect_context()
        """Verifies the instances that serve HTTPS (and presents the host's certificate to
        those that ask for one): the host's TLS settings, else the system's CAs. Made once, so
        that aiohttp reuses keep-alive connections (its pool is keyed by the context too)."""
        self.outstanding: Counter[str] = Counter()
        """Requests in flight by instance node id (least-outstanding balancing)."""

    async def close(self) -> None:
        """Close the session and its connections (the host does this when it stops)."""
        await self.session.close()


POOL = ExtensionKey("vyked.http.pool", HTTPClientPool)
"""The key of a host's :class:`HTTPClientPool`: ``host.extension(POOL)``."""
