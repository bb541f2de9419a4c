"""The state of one vyked connection, without I/O: bytes in, packets out; packets in, bytes out.

A :class:`Session` is what h11's ``Connection`` is to HTTP: it knows the handshake (the
connecting side sends ``hello`` with its protocol version, the accepting side answers
``welcome``, or an ``error`` and closes), answers ``ping`` with ``pong`` by itself, and turns
any protocol violation into an ``error`` packet followed by the end of the session. It has no
sockets and no timers, so it is tested with plain bytes; the asyncio
:class:`~vyked.core.transport.connection.Connection` only moves bytes between it and a
transport.

Use::

    session = Session(accepting=False, node_id="n1")
    wire.write(session.start())                # hello
    packets = session.receive_data(wire.read())  # application packets, once ready
    wire.write(session.data_to_send())         # pongs, welcome: what the session answered itself
    if session.failure is not None:            # the peer broke the protocol or refused us
        wire.write(session.fail(session.failure)); wire.close()
"""

from __future__ import annotations

from vyked.core.exceptions import (
    ConnectionLost,
    ProtocolError,
    ProtocolVersionMismatch,
    VykedError,
    error_from_code,
)
from vyked.core.protocol.framing import DEFAULT_MAX_FRAME_SIZE, FrameDecoder, encode_frame
from vyked.core.protocol.packets import PROTOCOL_VERSION, Error, Hello, Packet, Ping, Pong, Welcome


class Session:
    """Both ends of the vyked protocol use it; ``accepting`` says which end this is.

    State, readable by the adapter after every call:

    - :attr:`ready`: the handshake is done; application packets flow.
    - :attr:`failure`: why the session must end (the peer sent a bad frame, an unexpected
      packet, another protocol version, or, on the connecting side, refused the handshake).
      The adapter sends :meth:`fail`'s bytes and closes.
    - :attr:`closed`: nothing more is parsed or sent.
    """

    __slots__ = (
        "_decoder",
        "_outgoing",
        "_peer_refused",
        "accepting",
        "closed",
        "failure",
        "node_id",
        "peer_node_id",
        "peer_role",
        "ready",
        "role",
    )

    def __init__(
        self,
        *,
        accepting: bool,
        node_id: str = "",
        role: str = "",
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        self.accepting = accepting
        self.node_id = node_id
        self.role = role
        self.peer_node_id = ""
        self.peer_role = ""
        self.ready = False
        self.closed = False
        self.failure: VykedError | None = None
        self._peer_refused = False
        self._decoder = FrameDecoder(max_frame_size)
        self._outgoing = bytearray()

    # -- bytes in --------------------------------------------------------------------------

    def start(self) -> bytes:
        """The first bytes to send: ``hello`` on the connecting side, nothing on the other."""
        if self.accepting:
            return b""
        return bytes(encode_frame(Hello(protocol=PROTOCOL_VERSION, node_id=self.node_id, role=self.role)))

    def get_buffer(self) -> memoryview:
        """Where the next bytes read go (``asyncio.BufferedProtocol.get_buffer``)."""
        return self._decoder.get_buffer()

    def buffer_updated(self, nbytes: int) -> list[Packet]:
        """Account for ``nbytes`` written into :meth:`get_buffer`; return the application
        packets that arrived. Handshake, ``ping`` and ``pong`` are handled here; check
        :meth:`data_to_send` and :attr:`failure` afterwards."""
        return self._process(self._decoder.buffer_updated(nbytes))

    def receive_data(self, data: bytes) -> list[Packet]:
        """Feed received bytes (for callers without a receive buffer of their own)."""
        return self._process(self._decoder.feed(data))

    def _process(self, received: list[Packet]) -> list[Packet]:
        delivered: list[Packet] = []
        for packet in received:
            if self.failure is not None or self.closed:
                return delivered
            kind = type(packet)
            if kind is not Ping and kind is not Pong:
                if self.ready:
                    delivered.append(packet)
                else:
                    self._handshake(packet)
            elif isinstance(packet, Ping):
                self._outgoing += encode_frame(Pong(nonce=packet.nonce))
        if self._decoder.error is not None and self.failure is None:
            self.failure = self._decoder.error
        return delivered

    def _handshake(self, packet: Packet) -> None:
        if self.accepting:
            if not isinstance(packet, Hello):
                self.failure = ProtocolError(f"expected a 'hello' packet first, got {_type_name(packet)!r}")
            elif packet.protocol != PROTOCOL_VERSION:
                self.failure = ProtocolVersionMismatch(
                    f"protocol version {packet.protocol} is not supported; this peer speaks {PROTOCOL_VERSION}"
                )
            else:
                self.peer_node_id, self.peer_role = packet.node_id, packet.role
                self._outgoing += encode_frame(Welcome(protocol=PROTOCOL_VERSION, node_id=self.node_id))
                self.ready = True
        elif isinstance(packet, Welcome):
            self.peer_node_id = packet.node_id
            self.ready = True
        elif isinstance(packet, Error):
            self._peer_refused = True
            self.failure = error_from_code(packet.code, packet.message, packet.error_type)
        else:
            self.failure = ProtocolError(f"expected a 'welcome' packet first, got {_type_name(packet)!r}")

    # -- bytes out -------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """What the session answered by itself since the last call (``welcome``, ``pong``)."""
        if not self._outgoing:
            return b""
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    def send(self, packet: Packet) -> bytearray:
        """The frame carrying ``packet``; raises :class:`ConnectionLost` once closed."""
        if self.closed:
            raise ConnectionLost("the session is closed")
        return encode_frame(packet)

    def ping(self) -> bytearray:
        """A ``ping`` frame (the adapter's heartbeat timer decides when)."""
        return self.send(Ping())

    def fail(self, error: VykedError) -> bytes:
        """End the session because of ``error``: the ``error`` frame to send before closing
        (nothing when the peer itself refused the handshake)."""
        already = self.closed
        self.closed = True
        self.ready = False
        if self.failure is None:
            self.failure = error
        if already or self._peer_refused:
            return b""
        return bytes(encode_frame(Error(code=error.code, message=str(error))))

    def close(self) -> None:
        """End the session without telling the peer (the connection closed, or we close it)."""
        self.closed = True
        self.ready = False


def _type_name(packet: Packet) -> str:
    return type(packet).__name__.lower()
