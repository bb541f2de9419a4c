"""The registry server: accepts connections from service hosts and keeps them informed.

Hosts ``register`` their instances and ``watch`` the services they call; the registry answers
each watch with a snapshot and then pushes every added and removed instance. An instance is
removed as soon as the connection that registered it closes.
"""

from __future__ import annotations

import asyncio
import logging

from vyked.core.exceptions import ProtocolError
from vyked.core.host import serve_until_signalled
from vyked.core.protocol import DEFAULT_MAX_FRAME_SIZE
from vyked.core.protocol.packets import Packet, Register, Registered, Watch
from vyked.core.transport import Connection, PacketServer
from vyked.registry.state import Outbox, RegistryState

logger = logging.getLogger(__name__)


class Registry:
    """The vyked service registry.

    ``Registry(ip, port).start()`` serves until SIGINT or SIGTERM, as in the original vyked.
    Inside a running event loop use ``await registry.open()`` and ``await registry.close()``
    (or ``async with Registry(...)``); with ``port=0`` the bound port is in :attr:`port`.
    """

    def __init__(
        self, ip: str = "127.0.0.1", port: int = 4500, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    ) -> None:
        self.ip = ip
        self.port = port
        self.state = RegistryState()
        self._server = PacketServer(self, node_id="registry", max_frame_size=max_frame_size)

    def start(self) -> None:
        """Serve until SIGINT or SIGTERM (blocking)."""
        asyncio.run(serve_until_signalled(self.open, self.close))

    async def open(self) -> None:
        """Start listening in the running loop."""
        self.ip, self.port = await self._server.start(self.ip, self.port)
        logger.info("vyked registry listening on %s:%s", self.ip, self.port)

    async def close(self) -> None:
        await self._server.close()

    async def __aenter__(self) -> Registry:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- PacketHandler ------------------------------------------------------------------------

    def packet_received(self, conn: Connection, packet: Packet) -> None:
        self.state.touch(conn)
        if isinstance(packet, Register):
            info = packet.instance
            logger.info(
                "registered %s v%s (%s) at %s:%s [%s]",
                info.service,
                info.version,
                info.kind,
                info.host,
                info.port,
                info.node_id,
            )
            self._deliver(self.state.register(info, packet.dependencies, conn))
            conn.send(Registered(node_id=info.node_id))
        elif isinstance(packet, Watch):
            self._deliver(self.state.watch(conn, packet.services))
        else:
            conn.fail(ProtocolError(f"the registry does not accept {type(packet).__name__.lower()!r} packets"))

    def connection_lost(self, conn: Connection, exc: BaseException | None) -> None:
        for reg in self.state.registrations():
            if reg.owner is conn:
                logger.info("instance %s of %s is gone", reg.instance.node_id, reg.instance.service)
        self._deliver(self.state.drop_owner(conn))

    def _deliver(self, outbox: Outbox) -> None:
        for watcher, packet in outbox:
            assert isinstance(watcher, Connection)
            if not watcher.closed:
                watcher.send(packet)
