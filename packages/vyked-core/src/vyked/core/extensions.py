"""What a host shares among its services and clients: typed extension keys.

A package that needs one object per host (the TCP connection pool, the HTTP session, the
publish-subscribe hub) declares an :class:`ExtensionKey` for it; ``host.extension(KEY)`` makes
the object on first use and the host closes it when it stops::

    class ConnectionPool(HostExtension): ...
    POOL = ExtensionKey("vyked.tcp.pool", ConnectionPool)
    pool = host.extension(POOL)  # typed: ConnectionPool
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from vyked.core.service_host import ServiceHost


class HostExtension:
    """Base of the objects a host shares; the hooks do nothing unless overridden."""

    async def host_started(self) -> None:
        """Called once the host has registered its services and watches its dependencies."""

    async def drain(self, deadline: float) -> None:
        """Called when the host begins to stop, after its services have finished their
        requests: take no new work, finish (and acknowledge) what is in hand by ``deadline``
        (event-loop time)."""

    async def close(self) -> None:
        """Called when the host stops, in the reverse order of creation."""


E = TypeVar("E", bound=HostExtension)


class ExtensionKey(Generic[E]):
    """Names one kind of host extension and says how to make it."""

    __slots__ = ("factory", "name")

    def __init__(self, name: str, factory: Callable[[ServiceHost], E]) -> None:
        self.name = name
        self.factory = factory

    def __repr__(self) -> str:
        return f"<ExtensionKey {self.name}>"
