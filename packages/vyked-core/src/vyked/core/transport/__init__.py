"""Packet connections over asyncio TCP: the only place vyked touches sockets for its protocol."""

from vyked.core.transport.connection import Connection, PacketHandler, PacketServer, open_connection

__all__ = ["Connection", "PacketHandler", "PacketServer", "open_connection"]
