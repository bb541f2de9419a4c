"""The listening side of a TCP service: accepts client connections, feeds the dispatcher."""

from __future__ import annotations

from vyked.core.exceptions import ProtocolError
from vyked.core.protocol.packets import EventAck, Packet, Subscribe
from vyked.core.transport import Connection, PacketHandler
from vyked.tcp.dispatch import Dispatcher


class ServiceProtocolHandler:
    """Packet handler for every connection accepted by a TCP service."""

    __slots__ = ("dispatcher", "events")

    def __init__(self, dispatcher: Dispatcher, events: PacketHandler | None = None) -> None:
        self.dispatcher = dispatcher
        self.events = events
        """Takes the publish-subscribe packets (``subscribe``, ``event_ack``) of subscribers."""

    def packets_received(self, conn: Connection, packets: list[Packet]) -> None:
        """The packets of one read (:class:`~vyked.core.transport.connection.PacketHandler`)."""
        self.dispatcher.dispatch_all(conn, packets, self._other_packet)

    def packet_received(self, conn: Connection, packet: Packet) -> None:
        self.dispatcher.dispatch_all(conn, [packet], self._other_packet)

    def _other_packet(self, conn: Connection, packet: Packet) -> None:
        """Publish-subscribe packets go to the events handler; anything else is refused."""
        if self.events is not None and isinstance(packet, Subscribe | EventAck):
            self.events.packet_received(conn, packet)
        else:
            conn.fail(ProtocolError(f"a TCP service does not accept {type(packet).__name__.lower()!r} packets"))

    def connection_lost(self, conn: Connection, exc: BaseException | None) -> None:
        if self.events is not None:
            self.events.connection_lost(conn, exc)
