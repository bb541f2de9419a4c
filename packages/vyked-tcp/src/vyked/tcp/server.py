"""The listening side of a TCP service: accepts client connections, feeds the dispatcher."""

from __future__ import annotations

from vyked.core.exceptions import ProtocolError
from vyked.core.protocol.packets import Packet, Request
from vyked.core.transport import Connection
from vyked.tcp.dispatch import Dispatcher


class ServiceProtocolHandler:
    """Packet handler for every connection accepted by a TCP service."""

    __slots__ = ("dispatcher",)

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    def packet_received(self, conn: Connection, packet: Packet) -> None:
        if type(packet) is Request:
            self.dispatcher.dispatch(conn, packet)
        else:
            conn.fail(ProtocolError(f"a TCP service does not accept {type(packet).__name__.lower()!r} packets"))

    def connection_lost(self, conn: Connection, exc: BaseException | None) -> None:
        pass
