"""The state of one vyked connection, without I/O: bytes in, packets out; packets in, bytes out.

A :class:`Session` is what h11's ``Connection`` is to HTTP: it knows the handshake (the
connecting side sends ``hello`` with its protocol version, the accepting side answers
``welcome``, or an ``error`` and closes), proves the cluster secret both ways when one is
configured (``challenge`` and ``auth``, see :mod:`vyked.core.protocol.auth`), answers ``ping``
with ``pong`` by itself, and turns any protocol violation into an ``error`` packet followed by
the end of the session. It has no
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

from collections.abc import Callable

from vyked.core.exceptions import (
    AuthenticationFailed,
    ConnectionLost,
    Draining,
    ProtocolError,
    ProtocolVersionMismatch,
    VykedError,
    error_from_code,
)
from vyked.core.protocol import auth
from vyked.core.protocol.framing import DEFAULT_MAX_FRAME_SIZE, FrameDecoder, encode_frame, feed_through
from vyked.core.protocol.packets import (
    PROTOCOL_VERSION,
    SESSION_PACKETS_MADE,
    Auth,
    Challenge,
    Error,
    Hello,
    Packet,
    Ping,
    Pong,
    Welcome,
)

HANDSHAKE_MAX_FRAME_SIZE = 64 * 1024
"""The largest frame accepted before the handshake completes."""


DRAINING = Draining.code
"""An ``error`` without id and with this code is a notice, not a refusal: the peer is shutting
down and answers what it has; it goes to the handler and the connection stays open."""


class Session:
    """Both ends of the vyked protocol use it; ``accepting`` says which end this is.

    State, readable by the adapter after every call:

    - :attr:`ready`: the handshake is done; application packets flow.
    - :attr:`failure`: why the session must end (the peer sent a bad frame, an unexpected
      packet, another protocol version, or, on the connecting side, refused the handshake).
      The adapter sends :meth:`fail`'s bytes and closes.
    - :attr:`closed`: nothing more is parsed or sent.

    With a ``secret``, the handshake succeeds only if both sides know the same secret; either
    side that finds otherwise fails with :class:`~vyked.core.exceptions.AuthenticationFailed`.
    """

    __slots__ = (
        "_awaiting_auth",
        "_challenged",
        "_decoder",
        "_max_frame_size",
        "_nonce",
        "_peer_nonce",
        "_secret",
        "accepting",
        "closed",
        "failure",
        "frames_received",
        "get_buffer",
        "node_id",
        "outgoing",
        "peer_node_id",
        "peer_role",
        "ready",
        "refusal",
        "role",
    )

    def __init__(
        self,
        *,
        accepting: bool,
        node_id: str = "",
        role: str = "",
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        secret: bytes | None = None,
    ) -> None:
        self.accepting = accepting
        self.node_id = node_id
        self.role = role
        self.peer_node_id = ""
        self.peer_role = ""
        self.ready = False
        self.closed = False
        self.failure: VykedError | None = None
        self.frames_received = 0
        """Whole frames received so far, pings and pongs included: the peer's signs of life."""
        self.refusal: Error | None = None
        """The ``error`` packet with which the peer ended the session, if it did."""
        self._secret = secret or None
        self._nonce = auth.new_nonce() if self._secret else ""
        self._peer_nonce = ""
        self._awaiting_auth = False
        self._challenged = False
        self._max_frame_size = max_frame_size
        # Handshake packets are small: a stranger announcing a large frame is refused at once.
        self._decoder = FrameDecoder(min(max_frame_size, HANDSHAKE_MAX_FRAME_SIZE))
        self._decoder.max_packets = 1  # one handshake packet at a time: each may change the limits
        self.get_buffer: Callable[..., memoryview] = self._decoder.get_buffer
        """Where the next bytes read go (``asyncio.BufferedProtocol.get_buffer``; the size hint
        is ignored): the decoder's own method, one call less on every read."""
        self.outgoing = bytearray()
        """What the session answered by itself (``welcome``, ``pong``...) and :meth:`data_to_send`
        has not handed out yet: an adapter checks it after each read before calling that."""

    # -- bytes in --------------------------------------------------------------------------

    def start(self) -> bytes:
        """The first bytes to send: ``hello`` on the connecting side, nothing on the other."""
        if self.accepting:
            return b""
        hello = Hello(protocol=PROTOCOL_VERSION, node_id=self.node_id, role=self.role, nonce=self._nonce)
        return encode_frame(hello)

    def buffer_updated(self, nbytes: int) -> list[Packet]:
        """Account for ``nbytes`` written into :meth:`get_buffer`; return the application
        packets that arrived. Handshake, ``ping`` and ``pong`` are handled here; check
        :meth:`data_to_send` and :attr:`failure` afterwards."""
        made = SESSION_PACKETS_MADE.count
        received = self._decoder.buffer_updated(nbytes)
        if self.ready and self.failure is None and SESSION_PACKETS_MADE.count == made:
            # the common case, once ready: no ping, pong or error (which the session may have
            # to handle itself), only application packets, delivered as they are
            self.frames_received += len(received)
            if self._decoder.error is not None:
                self.failure = self._decoder.error
            return received
        if not self.ready:
            return self._handshaking(received)
        return self._process(received)

    def receive_data(self, data: bytes) -> list[Packet]:
        """Feed received bytes (for callers without a receive buffer of their own)."""
        return feed_through(self.get_buffer, self.buffer_updated, data)

    def _handshaking(self, received: list[Packet]) -> list[Packet]:
        """Before the handshake the decoder parses one packet at a time under the handshake's
        frame limit; once ready, what arrived behind the last handshake packet is parsed with
        the session's own limits."""
        delivered = self._process(received)
        while self._decoder.partial_bytes and self.failure is None and not self.closed:
            more = self._decoder.buffer_updated(0)
            delivered += self._process(more)  # also notes a decoding error
            if not more:
                break
        return delivered

    @property
    def partial_bytes(self) -> int:
        """Bytes received of the frame still arriving."""
        return self._decoder.partial_bytes

    def _process(self, received: list[Packet]) -> list[Packet]:
        self.frames_received += len(received)
        delivered: list[Packet] = []
        for packet in received:
            if self.failure is not None or self.closed:
                return delivered
            kind = type(packet)
            if kind is not Ping and kind is not Pong:
                if not self.ready:
                    self._handshake(packet)
                elif kind is Error and isinstance(packet, Error) and packet.id is None and packet.code != DRAINING:
                    self._refused(packet)  # the peer closes next, and says why
                else:
                    delivered.append(packet)
            elif isinstance(packet, Ping):
                self.outgoing += encode_frame(Pong(nonce=packet.nonce))
        if self._decoder.error is not None and self.failure is None:
            self.failure = self._decoder.error
        return delivered

    def _handshake(self, packet: Packet) -> None:
        if isinstance(packet, Error):
            self._refused(packet)
        elif self.accepting:
            self._accepting_handshake(packet)
        else:
            self._connecting_handshake(packet)

    def _accepting_handshake(self, packet: Packet) -> None:
        if self._awaiting_auth:
            if not isinstance(packet, Auth):
                self.failure = ProtocolError(f"expected an 'auth' packet, got {_type_name(packet)!r}")
            elif self._secret and auth.verify(self._secret, auth.CLIENT, self._peer_nonce, self._nonce, packet.proof):
                self._welcome()
            else:
                self.failure = AuthenticationFailed("the peer does not know the cluster secret")
        elif not isinstance(packet, Hello):
            self.failure = ProtocolError(f"expected a 'hello' packet first, got {_type_name(packet)!r}")
        elif packet.protocol != PROTOCOL_VERSION:
            self.failure = ProtocolVersionMismatch(
                f"protocol version {packet.protocol} is not supported; this peer speaks {PROTOCOL_VERSION}"
            )
        else:
            self.peer_node_id, self.peer_role = packet.node_id, packet.role
            if self._secret is None:
                self._welcome()  # a connecting side with a secret refuses us: it sees no challenge
            elif not packet.nonce:
                self.failure = AuthenticationFailed("this cluster requires a secret, and the peer presented none")
            else:
                self._peer_nonce = packet.nonce
                self._nonce = auth.new_nonce()
                proof = auth.proof(self._secret, auth.SERVER, packet.nonce, self._nonce)
                self.outgoing += encode_frame(Challenge(nonce=self._nonce, proof=proof))
                self._awaiting_auth = True

    def _welcome(self) -> None:
        self._awaiting_auth = False
        self.outgoing += encode_frame(Welcome(protocol=PROTOCOL_VERSION, node_id=self.node_id))
        self._became_ready()

    def _connecting_handshake(self, packet: Packet) -> None:
        if isinstance(packet, Challenge) and not self._challenged:
            self._challenged = True
            if self._secret is None:
                self.failure = AuthenticationFailed("the peer requires a cluster secret, and none is configured here")
            elif not auth.verify(self._secret, auth.SERVER, self._nonce, packet.nonce, packet.proof):
                self.failure = AuthenticationFailed("the peer does not know the cluster secret")
            else:
                proof = auth.proof(self._secret, auth.CLIENT, self._nonce, packet.nonce)
                self.outgoing += encode_frame(Auth(proof=proof))
        elif isinstance(packet, Welcome):
            if self._secret is not None and not self._challenged:
                self.failure = AuthenticationFailed("the peer does not know the cluster secret (it sent no challenge)")
                return
            self.peer_node_id = packet.node_id
            self._became_ready()
        else:
            self.failure = ProtocolError(f"expected a 'welcome' packet first, got {_type_name(packet)!r}")

    def _became_ready(self) -> None:
        self.ready = True
        self._decoder.max_frame_size = self._max_frame_size
        self._decoder.max_packets = 0

    def _refused(self, packet: Error) -> None:
        """The peer said why it ends the session (it closes next): nothing to answer."""
        self.refusal = packet
        self.failure = error_from_code(packet.code, packet.message, packet.error_type)

    # -- bytes out -------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """What the session answered by itself since the last call (``welcome``, ``pong``)."""
        if not self.outgoing:
            return b""
        data = bytes(self.outgoing)
        self.outgoing.clear()
        return data

    def send(self, packet: Packet) -> bytes:
        """The frame carrying ``packet``; raises :class:`ConnectionLost` once closed."""
        if self.closed:
            raise ConnectionLost("the session is closed")
        return encode_frame(packet)

    def ping(self) -> bytes:
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
        if already or self.refusal is not None:
            return b""
        return encode_frame(Error(code=error.code, message=str(error)))

    def close(self) -> None:
        """End the session without telling the peer (the connection closed, or we close it)."""
        self.closed = True
        self.ready = False


def _type_name(packet: Packet) -> str:
    return type(packet).__name__.lower()
