"""Packet connections over asyncio TCP transports: a thin adapter around the sans-IO session.

:class:`Connection` is an ``asyncio.BufferedProtocol``: the event loop reads straight into the
session's preallocated receive buffer, which avoids the fresh ``bytes`` object
``Protocol.data_received`` costs on every read (cpython issue 85451). What the connection
*means* (handshake, ping/pong, "error then close") is decided by the
:class:`~vyked.core.protocol.session.Session`; this module only moves bytes between it and the
transport, runs the heartbeat timer, and tells its :class:`PacketHandler` about packets and
the end of the connection.

Liveness is the connection's own business: the session answers ``ping`` itself, and with
:meth:`Connection.start_heartbeat` the connection pings an idle peer and aborts when no frame
has arrived for the heartbeat timeout, which is how a frozen peer (SIGSTOP, or a network cut
that never closes the socket) is told apart from a quiet one. Only whole frames count (or a
large frame's steady progress): a peer dripping bytes does not pass for alive.

Hostile peers are bounded here too: an accepted connection must complete the handshake within
the handshake timeout; a peer that does not read its answers makes the connection stop
reading from it once ``WRITE_HIGH_WATER`` bytes wait to be sent (and start again below the
low-water mark); a server refuses connections over its ``max_connections``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from time import perf_counter
from typing import Any, Protocol, cast

from vyked.core.exceptions import (
    AuthenticationFailed,
    ConnectionLost,
    ExceptionMap,
    HandshakeTimeout,
    ListenError,
    Overloaded,
    VykedError,
    map_exceptions,
)
from vyked.core.memory import MemoryReleaser
from vyked.core.observe import Family
from vyked.core.protocol.framing import DEFAULT_MAX_FRAME_SIZE
from vyked.core.protocol.packets import Packet
from vyked.core.protocol.session import Session
from vyked.core.tasks import wait_until

logger = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_HEARTBEAT_INTERVAL = 0.5
DEFAULT_HEARTBEAT_TIMEOUT = 2.0
DEFAULT_HANDSHAKE_TIMEOUT = 5.0
"""Seconds an accepted connection has to complete the handshake."""
WRITE_HIGH_WATER = 256 * 1024
"""Unsent bytes above which a connection stops reading from its peer (until they drain to a
quarter of it): a peer that sends requests but never reads answers cannot grow our memory."""
LISTEN_BACKLOG = 4096
"""Connections the kernel may hold for a server before it accepts them (capped by
``net.core.somaxconn``). asyncio's default of 100 overflows when hundreds of peers connect at
once: the kernel then drops the completed handshakes it has no room for, and a peer that
waits silently for the hello never learns its connection is gone."""
PROGRESS_BYTES = 64 * 1024
"""Bytes of one large frame that count as a sign of life while it is still arriving."""


class ConnectionCounts:
    """The process's packet connections, counted for metrics: opened and closed, accepted
    (``in``) or made (``out``), and those ended by a heartbeat timeout. Process-wide (a
    connection knows no host); updated in the event loop's thread."""

    __slots__ = ("closed", "heartbeat_timeouts", "opened")

    def __init__(self) -> None:
        self.opened = {"in": 0, "out": 0}
        self.closed = {"in": 0, "out": 0}
        self.heartbeat_timeouts = 0

    def metric_families(self) -> list[Family]:
        opened = Family("vyked_connections_opened_total", "Packet connections opened", "counter", ["direction"])
        closed = Family("vyked_connections_closed_total", "Packet connections closed", "counter", ["direction"])
        current = Family("vyked_connections_open", "Packet connections open now", "gauge", ["direction"])
        for direction in ("in", "out"):
            opened.add([direction], self.opened[direction])
            closed.add([direction], self.closed[direction])
            current.add([direction], self.opened[direction] - self.closed[direction])
        timeouts = Family(
            "vyked_heartbeat_timeouts_total", "Connections aborted because the peer went silent", "counter"
        ).add([], self.heartbeat_timeouts)
        return [opened, closed, current, timeouts]


COUNTS = ConnectionCounts()
"""The process's :class:`ConnectionCounts`."""


class PacketHandler(Protocol):
    """What a connection tells its owner about.

    A handler may also take the packets of one read at once: ``packets_received(conn,
    packets)``, called instead of ``packet_received`` for each (one call per read on the
    request paths, where pipelined peers send many per read). It handles them in order; one
    that may close the connection while handling a packet stops once ``conn.closed``, as the
    connection does between packets.
    """

    def packet_received(self, conn: Connection, packet: Packet) -> None: ...

    def connection_lost(self, conn: Connection, exc: BaseException | None) -> None: ...


class Connection(asyncio.BufferedProtocol):
    """One framed packet connection; the same class serves both ends."""

    def __init__(
        self,
        handler: PacketHandler,
        *,
        accepting: bool,
        node_id: str = "",
        role: str = "",
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        secret: bytes | None = None,
    ) -> None:
        self.handler = handler
        self.session = Session(
            accepting=accepting, node_id=node_id, role=role, max_frame_size=max_frame_size, secret=secret
        )
        self.peername: tuple[str, int] = ("", 0)
        self.sockname: tuple[str, int] = ("", 0)
        self.closed = False
        self.ready = False
        # uvloop's transports are not asyncio.Transport subclasses; only write/close/abort are used
        self._transport: asyncio.Transport | None = None
        loop = self._loop = asyncio.get_running_loop()
        self.read_at = perf_counter()
        """When the bytes being handled were read (:func:`time.perf_counter`): the packets of one
        read share it, so that metrics time requests and answers from their arrival without a
        clock reading each."""
        self.last_received = self.read_at
        """When something last arrived (:func:`time.perf_counter`), as of the last
        :meth:`quiet_for` (the heartbeat asks it): see there."""
        self._heartbeat: asyncio.TimerHandle | None = None
        self._heartbeat_interval = 0.0
        self._heartbeat_timeout = 0.0
        self._failure: BaseException | None = None
        self._handshake: asyncio.Future[None] = loop.create_future()
        self._closed_future: asyncio.Future[None] = loop.create_future()
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._refusal: VykedError | None = None
        self._read_holds = 0
        self._writing_paused = False
        self.in_flight = 0
        """Requests the owner is running for this peer (see :meth:`hold_reading`)."""
        self._frames_seen = 0
        self._partial_seen = 0
        self.corked: list[bytes | bytearray] | None = None
        """Frames waiting to be written together: those sent while the packets of one read are
        handled (written after them), or with :meth:`send_frame_soon` (at the end of the pass).
        While it is a list, a sender on a :attr:`ready` connection may append a frame to it
        directly, as :meth:`send_frame_soon` would (the pool does, for every pipelined request)."""
        self.get_buffer = self.session.get_buffer  # type: ignore[method-assign]
        self._deliver: Callable[[Connection, list[Packet]], None] = (
            getattr(handler, "packets_received", None) or self._deliver_each
        )
        """Hands the packets of one read to the handler: its own ``packets_received``, if it has one."""

    @property
    def node_id(self) -> str:
        return self.session.node_id

    @property
    def peer_node_id(self) -> str:
        return self.session.peer_node_id

    @property
    def peer_role(self) -> str:
        return self.session.peer_role

    @property
    def peer_certificate(self) -> dict[str, Any] | None:
        """The peer's verified TLS certificate (``SSLSocket.getpeercert()``), if it sent one."""
        if self._transport is None:
            return None
        certificate: dict[str, Any] | None = self._transport.get_extra_info("peercert")
        return certificate

    # -- asyncio protocol callbacks -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Small request and response frames must not wait for Nagle's algorithm.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.peername = tuple(transport.get_extra_info("peername") or ("", 0))[:2]
        self.sockname = tuple(transport.get_extra_info("sockname") or ("", 0))[:2]
        COUNTS.opened["in" if self.session.accepting else "out"] += 1
        self._transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        if self._refusal is not None:
            self.fail(self._refusal)
            return
        hello = self.session.start()
        if hello:
            self._transport.write(hello)

    def get_buffer(self, sizehint: int) -> memoryview:
        # Shadowed in __init__ by the session's own get_buffer: one call less on every read.
        return self.session.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        self.read_at = perf_counter()
        session = self.session
        packets = session.buffer_updated(nbytes)
        if session.outgoing or not self.ready:
            self._session_progressed()
        if packets and not self.closed:
            if len(packets) == 1:  # one request or answer per read: answered at once
                self._deliver(self, packets)
            else:
                self._deliver_together(packets)
        if session.failure is not None and not self.closed:
            self.fail(session.failure)

    def _session_progressed(self) -> None:
        """Send what the session answered by itself; note the end of the handshake."""
        session = self.session
        answers = session.data_to_send()
        if answers and self._transport is not None:
            self._transport.write(answers)
        if session.ready and not self.ready and not self.closed:
            self.ready = True
            if self._handshake_timer is not None:
                self._handshake_timer.cancel()
            if not self._handshake.done():
                self._handshake.set_result(None)

    def _deliver_together(self, packets: list[Packet]) -> None:
        """Hand over the packets of one read; the frames their handling sends (answers to
        pipelined requests) leave in one write, not one write each."""
        corking = self.corked is None  # else corked already for this pass: they join that batch
        if corking:
            self.corked = []
        try:
            self._deliver(self, packets)
        finally:
            if corking:
                self._uncork()

    def _deliver_each(self, conn: Connection, packets: list[Packet]) -> None:
        """For handlers without ``packets_received``: one ``packet_received`` call each."""
        for packet in packets:
            if self.closed:
                return
            self.handler.packet_received(self, packet)

    def _uncork(self) -> None:
        corked, self.corked = self.corked, None
        if corked and self._transport is not None and not self._transport.is_closing():
            self._transport.write(corked[0] if len(corked) == 1 else b"".join(corked))

    def eof_received(self) -> bool:
        return False  # close the transport; the peer has gone

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            COUNTS.closed["in" if self.session.accepting else "out"] += 1
        self.closed = True
        self.ready = False
        self.session.close()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
        failure = self._failure or exc
        if not self._handshake.done():
            if isinstance(exc, ssl.SSLError):  # the peer's TLS refused our certificate
                lost: VykedError = AuthenticationFailed(f"{self._peer_text()} refused the TLS session: {exc}")
            elif self._refused_by_tls_peer():
                lost = AuthenticationFailed(
                    f"{self._peer_text()} closed the TLS session before saying anything: "
                    "it probably does not accept this process's certificate (or its absence)"
                )
            else:
                lost = ConnectionLost(f"connection to {self._peer_text()} closed during the handshake")
            self._handshake.set_exception(lost)
            self._handshake.exception()  # retrieved here so an unawaited handshake logs nothing
        if not self._closed_future.done():
            self._closed_future.set_result(None)
        self.handler.connection_lost(self, failure)

    async def wait_ready(self, timeout: float | None = DEFAULT_CONNECT_TIMEOUT) -> None:
        """Wait until the handshake has completed.

        Raises :class:`AuthenticationFailed` if either side does not trust the other (secret,
        TLS), and :class:`ConnectionLost` if the handshake fails otherwise: no answer within
        ``timeout``, the connection closed, or the peer refused or garbled it (the protocol
        error is the cause), so that callers treat such a peer as unreachable and try another.
        """
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._handshake)
        except TimeoutError:
            self.abort()
            raise ConnectionLost(f"no handshake answer from {self._peer_text()} within {timeout} s") from None
        except (ConnectionLost, AuthenticationFailed):
            raise
        except VykedError as exc:
            raise ConnectionLost(f"the handshake with {self._peer_text()} failed: {exc}") from exc

    @property
    def write_buffer_size(self) -> int:
        """Bytes written but not yet handed to the operating system."""
        transport = self._transport
        return 0 if transport is None else transport.get_write_buffer_size()

    # -- sending and closing ----------------------------------------------------------------

    def send(self, packet: Packet) -> None:
        """Frame and write ``packet``; raises :class:`ConnectionLost` once closed."""
        if self.closed or self._transport is None:
            raise ConnectionLost(f"connection to {self._peer_text()} is closed")
        if self.corked is not None:
            self.corked.append(self.session.send(packet))
        else:
            self._transport.write(self.session.send(packet))

    def send_frame(self, frame: bytes | bytearray) -> None:
        """Write an already framed packet (see :func:`~vyked.core.protocol.encode_frame`)."""
        if self.closed or self._transport is None:
            raise ConnectionLost(f"connection to {self._peer_text()} is closed")
        if self.corked is not None:
            self.corked.append(frame)
        else:
            self._transport.write(frame)

    def send_frames(self, frames: list[bytes]) -> None:
        """Write already framed packets, in one write (they join the frames waiting, if any)."""
        if self.closed or self._transport is None:
            raise ConnectionLost(f"connection to {self._peer_text()} is closed")
        if self.corked is not None:
            self.corked.extend(frames)
        else:
            self._transport.write(frames[0] if len(frames) == 1 else b"".join(frames))

    def send_frame_soon(self, frame: bytes | bytearray) -> None:
        """Write an already framed packet at the end of this pass of the event loop, together
        with every frame sent meanwhile: one write (one system call, for both ends) for the
        requests a busy caller sends in one pass, where :meth:`send_frame` makes one each."""
        if self.closed or self._transport is None:
            raise ConnectionLost(f"connection to {self._peer_text()} is closed")
        if self.corked is not None:
            self.corked.append(frame)
        else:
            self.corked = [frame]
            self._loop.call_soon(self._uncork)

    def fail(self, error: VykedError) -> None:
        """Tell the peer why, then close: the reaction to any protocol violation."""
        logger.warning("closing connection with %s: %s", self._peer_text(), error)
        self._failure = error
        self._uncork()  # what was answered before the failure goes first
        frame = self.session.fail(error)
        if frame and not self.closed and self._transport is not None:
            self._transport.write(frame)
        if not self._handshake.done():
            self._handshake.set_exception(error)
            self._handshake.exception()
        self.close()

    def close(self) -> None:
        """Close after flushing what is queued. Not :attr:`ready` from now on, although the
        loop tells that the connection is lost only later."""
        self._uncork()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()
        self.closed = True
        self.ready = False

    def abort(self) -> None:
        """Close at once, dropping what is queued."""
        if self._transport is not None:
            self._transport.abort()
        self.closed = True
        self.ready = False

    async def wait_closed(self) -> None:
        await self._closed_future

    # -- flow control -----------------------------------------------------------------------

    def hold_reading(self) -> None:
        """Stop reading from the peer until as many :meth:`release_reading` calls (the
        dispatcher holds a connection with too many requests in flight)."""
        self._read_holds += 1
        if self._read_holds == 1 and self._transport is not None and not self.closed:
            self._transport.pause_reading()

    def release_reading(self) -> None:
        self._read_holds -= 1
        if self._read_holds == 0 and self._transport is not None and not self.closed:
            self._transport.resume_reading()

    def pause_writing(self) -> None:
        # The peer does not read its answers: stop taking its requests. If it stays that way,
        # the heartbeat ends the connection (its pongs cannot be read either).
        self._writing_paused = True
        self.hold_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self.release_reading()

    # -- timers ------------------------------------------------------------------------------

    def _refused_by_tls_peer(self) -> bool:
        """Under TLS 1.3 a server checks the client's certificate after the client has finished
        its part of the TLS handshake, and asyncio closes without passing on the alert: a
        connecting side whose TLS peer hangs up before any frame was refused by it."""
        return (
            not self.session.accepting
            and self.session.frames_received == 0
            and self._transport is not None
            and self._transport.get_extra_info("ssl_object") is not None
        )

    def start_handshake_timer(self, timeout: float) -> None:
        """Fail the connection unless the handshake completes within ``timeout`` seconds."""
        if not self.ready and not self.closed:
            self._handshake_timer = self._loop.call_later(timeout, self._handshake_overdue, timeout)

    def _handshake_overdue(self, timeout: float) -> None:
        if not self.ready and not self.closed:
            self.fail(HandshakeTimeout(f"no complete handshake within {timeout} s"))

    def refuse(self, error: VykedError) -> None:
        """Before the connection is made: answer it with ``error`` and close at once."""
        self._refusal = error

    # -- heartbeats ---------------------------------------------------------------------------

    def start_heartbeat(
        self, interval: float = DEFAULT_HEARTBEAT_INTERVAL, timeout: float = DEFAULT_HEARTBEAT_TIMEOUT
    ) -> None:
        """Ping the peer when it has been quiet for ``interval`` seconds; abort the connection
        when nothing has arrived for ``timeout`` seconds. Costs nothing while traffic flows."""
        self._heartbeat_interval, self._heartbeat_timeout = interval, timeout
        self.last_received = perf_counter()
        if self._heartbeat is None and not self.closed:
            self._heartbeat = self._loop.call_later(interval, self._beat)

    def quiet_for(self) -> float:
        """Seconds since anything last arrived from the peer: whole frames, or a large frame's
        steady progress (a drip of bytes does not count).

        Worked out when asked, not on every read: the session counts the frames, and the
        read that brought the last of those since the previous question is when the peer was
        last heard (a read that brought only a drip after them may stand in for it once)."""
        session = self.session
        frames, partial = session.frames_received, session.partial_bytes
        if frames != self._frames_seen or partial - self._partial_seen >= PROGRESS_BYTES:
            self._frames_seen, self._partial_seen = frames, partial
            self.last_received = max(self.last_received, self.read_at)
        return perf_counter() - self.last_received

    def _beat(self) -> None:
        if self.closed:
            return
        if self._read_holds and not self._writing_paused and self._transport is not None:
            # We stopped reading it (too many of its requests running): its silence is ours,
            # and our pings tell it we are alive although its own pings go unanswered.
            self.last_received = perf_counter()
            self._transport.write(self.session.ping())
        quiet = self.quiet_for()
        if quiet >= self._heartbeat_timeout:
            self._failure = ConnectionLost(
                f"{self._peer_text()} sent nothing for {quiet:.1f} s (heartbeat timeout {self._heartbeat_timeout} s)"
            )
            logger.warning("%s", self._failure)
            COUNTS.heartbeat_timeouts += 1
            self.abort()
            return
        if quiet >= self._heartbeat_interval * 0.5 and self._transport is not None:
            self._transport.write(self.session.ping())
        self._heartbeat = self._loop.call_later(self._heartbeat_interval, self._beat)

    def _peer_text(self) -> str:
        host, port = self.peername
        return f"{host}:{port}" if host else "peer"

    def __repr__(self) -> str:
        state = "closed" if self.closed else "ready" if self.ready else "handshaking"
        return f"<Connection {self._peer_text()} {state}>"


async def open_connection(
    host: str,
    port: int,
    handler: PacketHandler,
    *,
    node_id: str = "",
    role: str = "",
    timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    secret: bytes | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> Connection:
    """Connect (over TLS with ``ssl_context``), complete the handshake (proving ``secret``
    both ways, if given) and return the ready connection.

    Raises :class:`ConnectionLost` (a ``ConnectionError``) if the peer cannot be reached or
    does not complete the handshake within ``timeout``, and :class:`AuthenticationFailed` if
    the peer's certificate or its knowledge of the secret do not check out (or it refuses ours).
    """
    loop = asyncio.get_running_loop()

    def connection() -> Connection:
        return Connection(
            handler, accepting=False, node_id=node_id, role=role, max_frame_size=max_frame_size, secret=secret
        )

    with map_exceptions(_CONNECT_ERRORS, f"cannot connect to {host}:{port}"):
        async with asyncio.timeout(timeout):
            _, conn = await loop.create_connection(
                connection, host, port, ssl=ssl_context, server_hostname=host if ssl_context is not None else None
            )
    await conn.wait_ready(timeout)
    return conn


_CONNECT_ERRORS: ExceptionMap = {
    ssl.SSLCertVerificationError: AuthenticationFailed,
    TimeoutError: ConnectionLost,
    OSError: ConnectionLost,
}


class PacketServer:
    """A listening socket whose accepted connections speak vyked packets."""

    def __init__(
        self,
        handler: PacketHandler,
        *,
        node_id: str = "",
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        heartbeat: tuple[float, float] | None = None,
        secret: bytes | None = None,
        ssl_context: ssl.SSLContext | None = None,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        max_connections: int | None = None,
    ) -> None:
        """``heartbeat`` is ``(interval, timeout)`` for :meth:`Connection.start_heartbeat` on
        every accepted connection; None accepts quiet peers forever. ``secret`` is the cluster
        secret peers must prove they know; ``ssl_context`` serves TLS. Over ``max_connections``
        a new connection gets an ``overloaded`` error and is closed."""
        self.handler = handler
        self.node_id = node_id
        self.max_frame_size = max_frame_size
        self.heartbeat = heartbeat
        self.secret = secret
        self.ssl_context = ssl_context
        self.handshake_timeout = handshake_timeout
        self.max_connections = max_connections
        self.connections: set[Connection] = set()
        self.memory = MemoryReleaser()
        self._server: asyncio.Server | None = None
        self._idle: asyncio.Event | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Bind and listen; returns the bound address (``port=0`` picks a free port)."""
        loop = asyncio.get_running_loop()
        with map_exceptions({OSError: ListenError}, f"cannot listen on {host}:{port}"):
            self._server = await loop.create_server(
                self._make_connection,
                host,
                port,
                reuse_address=True,
                ssl=self.ssl_context,
                backlog=LISTEN_BACKLOG,
            )
        sockname = self._server.sockets[0].getsockname()
        return sockname[0], sockname[1]

    def _make_connection(self) -> Connection:
        conn = Connection(
            self._Tracker(self),
            accepting=True,
            node_id=self.node_id,
            max_frame_size=self.max_frame_size,
            secret=self.secret,
        )
        if self.max_connections is not None and len(self.connections) >= self.max_connections:
            conn.refuse(Overloaded(f"this peer serves at most {self.max_connections} connections"))
            return conn  # not tracked: it closes as soon as it is made
        if self.heartbeat is not None:
            conn.start_heartbeat(*self.heartbeat)
        conn.start_handshake_timer(self.handshake_timeout)
        self.connections.add(conn)
        return conn

    class _Tracker:
        """Forwards to the server's handler and forgets closed connections."""

        __slots__ = ("packet_received", "packets_received", "server")

        def __init__(self, server: PacketServer) -> None:
            self.server = server
            self.packet_received = server.handler.packet_received
            self.packets_received = getattr(server.handler, "packets_received", None)

        def connection_lost(self, conn: Connection, exc: BaseException | None) -> None:
            server = self.server
            server.connections.discard(conn)
            if not server.connections and server._idle is not None:
                server._idle.set()
            server.handler.connection_lost(conn, exc)
            self.server.memory.connection_closed()

    def stop_accepting(self) -> None:
        """Stop listening; connections already accepted carry on (draining)."""
        if self._server is not None:
            self._server.close()

    async def wait_idle(self, deadline: float) -> bool:
        """Wait until every accepted connection has closed, or until ``deadline`` (event-loop
        time); False if some are still open."""
        if not self.connections:
            return True
        self._idle = asyncio.Event()
        return await wait_until(self._idle, deadline - asyncio.get_running_loop().time())

    async def close(self) -> None:
        """Stop listening and close every accepted connection."""
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.close()
        self.memory.cancel()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
