"""Client side of request-response: one connection per remote instance, shared by the host.

:class:`InstanceConnection` keeps the requests in flight on one connection, matches answers to
them by id, enforces each request's timeout, and fails everything in flight at once with
:class:`~vyked.core.exceptions.ConnectionLost` when the connection dies.

Timeouts use one timer per connection, not one per request (a timer and its cancellation cost
more than the rest of sending a request): it is set for the earliest deadline of the requests
in flight, and when it fires it fails those past their deadline and is set again for the
earliest of the others. A request with an earlier deadline than the timer's moves it.
:class:`ConnectionPool` (a host extension) opens them on demand; an instance it cannot reach,
or whose connection dies, is marked unreachable in the host's instance directory, so that
balancing skips it for a second.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
import warnings
from collections.abc import Callable, Mapping
from time import perf_counter
from typing import TYPE_CHECKING, Any

from vyked.core.client import InstanceUnreachable
from vyked.core.exceptions import ConnectionLost, Draining, InvalidParams, RequestTimeout, VykedError, error_from_code
from vyked.core.extensions import ExtensionKey, HostExtension
from vyked.core.health import InstanceHealth
from vyked.core.instances import Instance
from vyked.core.observe import Family, Observation, Stopwatch
from vyked.core.protocol import ENCODE_ERRORS, encode_payload, frame_header
from vyked.core.protocol.packets import Error, Packet, Request, Response
from vyked.core.service_host import ServiceHost
from vyked.core.transport import Connection, open_connection
from vyked.tcp.calls import Call
from vyked.tcp.routes import Route

if TYPE_CHECKING:
    from vyked.tcp.client import TCPServiceClient

logger = logging.getLogger(__name__)


_Pending = tuple[
    "asyncio.Future[Any]", float, Call, Observation | Stopwatch | None, float,
    "TCPServiceClient | None", dict[str, Any], object, str,
]  # fmt: skip
"""``(future, deadline, call, observation, sent, client, params, entity, app)``: the deadline
in loop time; ``sent`` the :func:`~time.perf_counter` time of sending, when observed (else 0);
the rest what ``client`` needs to send the request again. One tuple, made for every request."""


class InstanceConnection:
    """Requests in flight to one instance, over one connection."""

    __slots__ = (
        "_deadline",
        "_loop",
        "_next_id",
        "_timer",
        "closing",
        "connection",
        "health",
        "instance",
        "on_lost",
        "pending",
    )

    def __init__(
        self,
        instance: Instance,
        on_lost: Callable[[InstanceConnection], None] | None = None,
        health: InstanceHealth | None = None,
    ) -> None:
        self.instance = instance
        self.on_lost = on_lost
        self.health = health if health is not None else InstanceHealth()
        self.connection: Connection | None = None
        self.pending: dict[int, _Pending] = {}
        self._next_id = 0
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = math.inf
        """When :attr:`_timer` fires (loop time); infinity while it is not set."""
        self.closing = False

    @property
    def usable(self) -> bool:
        conn = self.connection
        return conn is not None and conn.ready and not self.closing

    def request(
        self,
        service: str,
        call: Call,
        params: dict[str, Any],
        app: str = "",
        client: TCPServiceClient | None = None,
        entity: object = None,
        observation: Observation | Stopwatch | None = None,
        trace: Mapping[str, str] | None = None,
    ) -> asyncio.Future[Any]:
        """Send one request of ``call`` with ``params``; the future resolves to the result or
        raises a vyked error (:class:`RequestTimeout` past the call's attempt timeout).

        With ``client``, a failure other than an answer from the handler goes to the client's
        ``resend`` (its slow path, with ``entity``), whose outcome becomes the future's.
        Raises :class:`InstanceUnreachable` when the connection is closed (nothing was sent).
        ``observation`` (the fast path's) is ended with the answer, or handed to ``resend``; a
        :class:`~vyked.core.observe.Stopwatch` instead times the request from its sending.
        ``app`` (the caller's ``app_name``) and ``trace`` (its trace context) go along."""
        conn = self.connection
        if conn is None or not conn.ready:
            raise InstanceUnreachable(f"connection to {self.instance.describe()} is closed")
        request_id = self._next_id = self._next_id + 1
        try:
            if trace:
                packet = Request(request_id, service, call.endpoint, params, app, dict(trace))
            else:
                packet = Request(request_id, service, call.endpoint, params, app)
            body = encode_payload(packet)
        except ENCODE_ERRORS as exc:
            raise InvalidParams(
                f"cannot send {service}.{call.endpoint}: a parameter is not JSON-serialisable ({exc})"
            ) from None
        frame = frame_header(len(body)) + body  # encode_frame, without a call
        loop = self._loop
        future = loop.create_future()
        deadline = loop.time() + call.attempt_timeout
        sent = 0.0 if observation is None else perf_counter()
        pending = self.pending
        if pending:  # others are in flight: this pass of the loop may send more, write them together
            corked = conn.corked
            if corked is not None:  # send_frame_soon, without a call
                corked.append(frame)
            else:
                conn.send_frame_soon(frame)
        else:
            conn.send_frame(frame)
        pending[request_id] = (future, deadline, call, observation, sent, client, params, entity, app)
        if deadline < self._deadline:
            self._arm(deadline)
        return future

    def _arm(self, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._deadline = deadline
        self._timer = self._loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        """Fail the requests past their deadline; set the timer for the next one."""
        self._timer, self._deadline = None, math.inf
        now = self._loop.time() + 0.001  # timers may fire a little early (uvloop: by up to 1 ms)
        expired = [request_id for request_id, entry in self.pending.items() if entry[1] <= now]
        for request_id in expired:
            entry = self.pending.pop(request_id)
            call = entry[2]
            error = RequestTimeout(
                f"{self.instance.service}.{call.endpoint} got no answer from {self.instance.describe()} "
                f"within {call.attempt_timeout} s"
            )
            self._fail(entry, error)
        if self.pending:  # resends may have set the timer meanwhile, for a later deadline
            earliest = min(entry[1] for entry in self.pending.values())
            if earliest < self._deadline:
                self._arm(earliest)

    def _observed(self, entry: _Pending, error: BaseException | None = None, now: float | None = None) -> None:
        """End the observation of a request that ended (with ``error``, or answered), at
        ``now`` (a :func:`perf_counter` time: the read that brought the answer) or now; an
        :class:`Observation` times itself."""
        observation = entry[3]
        if isinstance(observation, Stopwatch):
            observation.record((perf_counter() if now is None else now) - entry[4], error)
        elif observation is not None:
            observation.end(error)

    def _fail(self, entry: _Pending, error: VykedError) -> None:
        """End a request with ``error``, or hand it to its client's ``resend``."""
        future, deadline, call, observation, sent, client, params, entity, app = entry
        if future.done():
            self._observed(entry, error)
            return
        if client is None:  # the client's slow path awaits it, and reports the outcome
            future.set_exception(error)
            self._observed(entry, error)
        else:
            if isinstance(observation, Stopwatch):  # the slow path ends it when the retries are done
                observation = observation.start(sent)
            sent_at = deadline - call.attempt_timeout
            _chain(client.resend(error, self.instance, sent_at, call, params, entity, app, observation), future)

    # -- PacketHandler ------------------------------------------------------------------------

    def packets_received(self, conn: Connection, packets: list[Packet]) -> None:
        """The answers of one read (:class:`~vyked.core.transport.connection.PacketHandler`).

        Calls are timed to the read that brought their answers. With metrics alone, the
        answers of one stopwatch (usually every answer of the read) are counted together,
        from the times their requests were sent (:meth:`Stopwatch.answered_since
        <vyked.core.observe.Stopwatch.answered_since>`); any other ends on its own."""
        pending = self.pending
        breakers = self.health.breakers
        timed: Stopwatch | None = None  # the stopwatch of the answers counted together
        sent: list[float] = []  # when their requests were sent
        try:
            for packet in packets:
                if type(packet) is Response:
                    entry = pending.pop(packet.id, None)
                    if entry is None:
                        continue  # answered after its timeout
                    observation = entry[3]
                    if observation is not None:
                        if observation is timed:
                            sent.append(entry[4])
                        elif timed is None and type(observation) is Stopwatch:
                            timed = observation
                            sent.append(entry[4])
                        else:
                            self._observed(entry, None, conn.read_at)
                    if breakers:
                        self.health.succeeded(self.instance)
                    try:
                        entry[0].set_result(packet.result)
                    except asyncio.InvalidStateError:
                        pass  # its caller cancelled it
                    if packet.deprecation:  # after the answer: a warning turned error must not lose it
                        warnings.warn(packet.deprecation, DeprecationWarning, stacklevel=2)
                elif isinstance(packet, Error):
                    self._error_received(conn, packet)
        finally:
            if timed is not None:
                if len(sent) == 1:  # a lone answer (sequential calls) joins the bulk count
                    timed.durations.append(conn.read_at - sent[0])
                else:
                    timed.answered_since(conn.read_at, sent)
        if self.closing and not self.pending:
            conn.close()

    def packet_received(self, conn: Connection, packet: Packet) -> None:
        self.packets_received(conn, [packet])

    def _error_received(self, conn: Connection, packet: Error) -> None:
        if packet.id is None:
            self._connection_error(conn, packet)
            return
        entry = self.pending.pop(packet.id, None)
        if entry is None:
            return
        error = error_from_code(packet.code, packet.message, packet.error_type, packet.args)
        if error.not_executed:
            self._fail(entry, error)
        else:  # the handler's own answer: the instance is fine
            future = entry[0]
            if self.health.breakers:
                self.health.succeeded(self.instance)
            self._observed(entry, error)
            if not future.done():
                future.set_exception(error)

    def _connection_error(self, conn: Connection, packet: Error) -> None:
        if packet.code == Draining.code:
            # The instance is shutting down: it answers what it has, refuses the rest, and
            # closes once we are idle. Send it nothing more.
            logger.info("%s is draining: %s", self.instance.describe(), packet.message)
            self.health.draining(self.instance)
            if self.on_lost is not None:
                self.on_lost(self)
            self.close_when_idle()
        else:
            logger.error("%s reported a connection error: %s", self.instance.describe(), packet.message)

    def connection_lost(self, conn: Connection, exc: BaseException | None) -> None:
        if self.on_lost is not None and not self.closing:
            self.on_lost(self)
        pending, self.pending = self.pending, {}
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._deadline = None, math.inf
        reason = f": {exc}" if exc else ""
        for entry in pending.values():
            self._fail(
                entry,
                ConnectionLost(f"connection to {self.instance.describe()} closed with the request in flight{reason}"),
            )

    def close_when_idle(self) -> None:
        self.closing = True
        if not self.pending and self.connection is not None:
            self.connection.close()


class ConnectionPool(HostExtension):
    """The host's connections to remote TCP instances, keyed by node id."""

    def __init__(self, host: ServiceHost) -> None:
        self.host = host
        self.connections: dict[str, InstanceConnection] = {}
        self._connecting: dict[str, asyncio.Future[InstanceConnection]] = {}
        self._routes: dict[tuple[str, str], Route] = {}
        host.directory.add_listener(self._instance_changed)

    def route(self, service: str, version: str) -> Route | None:
        """The :class:`~vyked.tcp.routes.Route` to ``service`` (``version``): None unless its
        instances are known and every one is connected, and no circuit breaker is set."""
        route = self._routes.get((service, version))
        if route is not None:
            return route
        directory = self.host.directory
        if directory.health.breakers or service not in directory.known:
            return None
        connections = []
        for instance in directory.candidates(service, version, "tcp"):
            ic = self.ready(instance)
            if ic is None:
                return None
            connections.append(ic)
        if not connections:
            return None
        route = Route(connections, directory.balancer(service, version, "tcp"), directory.health.breakers)
        self._routes[(service, version)] = route
        return route

    def _retire_routes(self) -> None:
        """Something that decides where requests go changed: routes are made anew on demand."""
        for route in self._routes.values():
            route.current = False
        self._routes.clear()

    def ready(self, instance: Instance) -> InstanceConnection | None:
        ic = self.connections.get(instance.node_id)
        if ic is None or ic.closing:
            return None
        conn = ic.connection  # InstanceConnection.usable, inlined: this runs for every request
        return ic if conn is not None and conn.ready else None

    async def connect(self, instance: Instance, ssl_context: ssl.SSLContext | None = None) -> InstanceConnection:
        """The ready connection to ``instance``, opening it if needed (once, however many ask);
        over TLS if the instance serves TLS, with ``ssl_context`` or else the host's.

        Raises :class:`~vyked.core.client.InstanceUnreachable` if it cannot be opened, and
        :class:`~vyked.core.exceptions.AuthenticationFailed` if either side does not trust the other.
        """
        ready = self.ready(instance)
        if ready is not None:
            return ready
        waiting = self._connecting.get(instance.node_id)
        if waiting is None:
            waiting = asyncio.ensure_future(self._open(instance, ssl_context))
            self._connecting[instance.node_id] = waiting
            waiting.add_done_callback(lambda _: self._connecting.pop(instance.node_id, None))
        return await asyncio.shield(waiting)

    async def _open(self, instance: Instance, ssl_context: ssl.SSLContext | None) -> InstanceConnection:
        ic = InstanceConnection(instance, self._lost, self.host.directory.health)
        trust = self.host.trust
        try:
            ic.connection = await open_connection(
                instance.host,
                instance.port,
                ic,
                node_id=self.host.node_id,
                role="client",
                secret=trust.secret,
                ssl_context=(ssl_context or trust.connect_context()) if instance.tls else None,
            )
        except ConnectionLost as exc:
            raise InstanceUnreachable(str(exc)) from exc
        ic.connection.start_heartbeat(*self.host.heartbeat)
        self.connections[instance.node_id] = ic
        self._retire_routes()
        return ic

    def outstanding(self, instance: Instance) -> int:
        """Requests in flight to ``instance`` from this host."""
        ic = self.connections.get(instance.node_id)
        return 0 if ic is None else len(ic.pending)

    def metric_families(self) -> list[Family]:
        """Calls in flight from this host, by service (TCP)."""
        in_flight: dict[str, int] = {}
        for ic in list(self.connections.values()):
            service = ic.instance.service
            in_flight[service] = in_flight.get(service, 0) + len(ic.pending)
        family = Family(
            "vyked_client_requests_in_flight", "Calls sent and not yet answered", "gauge", ["kind", "service"]
        )
        for service, count in sorted(in_flight.items()):
            family.add(["tcp", service], count)
        return [family]

    def _lost(self, ic: InstanceConnection) -> None:
        """A connection died (or is draining) under us: open a new one for the next request."""
        if self.connections.get(ic.instance.node_id) is ic:
            del self.connections[ic.instance.node_id]
        self._retire_routes()

    def _instance_changed(self, event: str, instance: Instance) -> None:
        self._retire_routes()
        if event == "removed":
            ic = self.connections.pop(instance.node_id, None)
            if ic is not None:
                ic.close_when_idle()

    async def close(self) -> None:
        self.host.directory.remove_listener(self._instance_changed)
        self._retire_routes()
        connections = list(self.connections.values())
        self.connections.clear()
        for ic in connections:
            ic.closing = True
            if ic.connection is not None:
                ic.connection.close()
        for ic in connections:
            if ic.connection is not None:
                await ic.connection.wait_closed()


def _chain(source: asyncio.Future[Any], target: asyncio.Future[Any]) -> None:
    """Resolve ``target`` as ``source`` resolves."""

    def copy(done: asyncio.Future[Any]) -> None:
        if target.done():
            if not done.cancelled():
                done.exception()  # retrieved: nobody waits for it any more
        elif done.cancelled():
            target.cancel()
        elif (error := done.exception()) is not None:
            target.set_exception(error)
        else:
            target.set_result(done.result())

    source.add_done_callback(copy)


POOL = ExtensionKey("vyked.tcp.pool", ConnectionPool)
"""``host.extension(POOL)``: the host's :class:`ConnectionPool`."""
