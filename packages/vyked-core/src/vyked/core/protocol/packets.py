"""The packets of the vyked wire protocol, as typed msgspec structs.

Every packet is a JSON object whose ``type`` field names its kind. Decoding validates
field types, so a packet that reaches a handler is well formed. ``docs/protocol.md``
is the normative description; keep the two in step.
"""

from __future__ import annotations

from typing import Any

import msgspec

PROTOCOL_VERSION = 1


class _Packet(msgspec.Struct, tag_field="type", omit_defaults=True, gc=False):
    """``gc=False``: a packet never takes part in a reference cycle, so the garbage collector
    need not track the several made for every request (cheaper to make, and to collect)."""


class _Made:
    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


SESSION_PACKETS_MADE = _Made()
"""``.count``: the ``ping``, ``pong`` and ``error`` packets this process has made, decoded or
built. A session reads it before and after decoding a read: unchanged, the read holds none of
the packets it may have to handle itself, which is cheaper to know so than by looking at the
type of every packet of every read. Packets made meanwhile in another thread make it look
when it need not. No count is lost between threads as long as the GIL holds: CPython switches
threads at calls and loops, and ``count += 1`` has none between its read and its write (a
free-threaded build would need an atomic counter here)."""


class _SessionPacket(_Packet):
    """A packet a session may have to handle itself: counted in :data:`SESSION_PACKETS_MADE`."""

    def __post_init__(self) -> None:
        SESSION_PACKETS_MADE.count += 1


# -- connection set-up and liveness -------------------------------------------------------


class Hello(_Packet, tag="hello"):
    """First packet on every connection, from the side that connected. ``nonce`` (hex) is set
    when the connecting side knows a cluster secret: the accepting side must then prove it
    knows the secret too (``challenge``)."""

    protocol: int
    node_id: str = ""
    role: str = ""
    nonce: str = ""


class Challenge(_Packet, tag="challenge"):
    """The accepting side's answer to ``hello`` when it has a cluster secret: its own ``nonce``
    and ``proof`` = HMAC-SHA256(secret, "vyked-server" | client nonce | server nonce), hex."""

    nonce: str
    proof: str


class Auth(_Packet, tag="auth"):
    """The connecting side's proof: HMAC-SHA256(secret, "vyked-client" | client nonce | server
    nonce), hex. The accepting side answers ``welcome``, or ``error`` ``auth_failed``."""

    proof: str


class Welcome(_Packet, tag="welcome"):
    """The accepting side's answer to a compatible ``hello``."""

    protocol: int
    node_id: str = ""


class Ping(_SessionPacket, tag="ping"):
    """Liveness probe; the peer answers with ``pong``."""

    nonce: int = 0


class Pong(_SessionPacket, tag="pong"):
    nonce: int = 0


class Error(_SessionPacket, tag="error"):
    """An error: the answer to request ``id``, or (``id`` null) about the connection itself."""

    code: str
    message: str
    id: int | None = None
    error_type: str = ""
    args: list[Any] = []


# -- request-response -----------------------------------------------------------------------


class Request(_Packet, tag="request"):
    """A call of ``endpoint``. ``app`` names the calling application (a ``@request``
    method's ``app_name``); ``trace`` carries the caller's trace context (W3C ``traceparent``,
    ``tracestate``, ``baggage``). Both optional: peers that predate them ignore them."""

    id: int
    service: str
    endpoint: str
    params: dict[str, Any] = {}
    app: str = ""
    trace: dict[str, str] = {}


class Response(_Packet, tag="response"):
    id: int
    result: Any = None
    deprecation: str | None = None


# -- registry ----------------------------------------------------------------------------------


class Dependency(msgspec.Struct, omit_defaults=True):
    service: str
    version: str


class InstanceInfo(msgspec.Struct, frozen=True):
    """One running service instance, as the registry knows it (and as clients pick it:
    :data:`vyked.core.instances.Instance` is this struct)."""

    service: str
    version: str
    host: str
    port: int
    node_id: str
    kind: str = "tcp"
    tls: bool = False
    """The instance serves TLS: clients connect with TLS (HTTP: ``https``)."""

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def describe(self) -> str:
        """``Service at host:port``, for messages."""
        return f"{self.service} at {self.host}:{self.port}"


class Register(_Packet, tag="register"):
    """A service instance announces itself and the services it depends on."""

    instance: InstanceInfo
    dependencies: list[Dependency] = []


class Registered(_Packet, tag="registered"):
    node_id: str


class Deregister(_Packet, tag="deregister"):
    """A host withdraws one of its instances before it stops (graceful drain): the registry
    tells the watchers at once, rather than when the host's connection closes."""

    node_id: str


class Deregistered(_Packet, tag="deregistered"):
    node_id: str


class Watch(_Packet, tag="watch"):
    """Ask for the instances of these services and every later change to them."""

    services: list[str]


class Instances(_Packet, tag="instances"):
    """Snapshot of every live instance of ``service``, sent in answer to ``watch``."""

    service: str
    instances: list[InstanceInfo]


class InstanceAdded(_Packet, tag="instance_added"):
    instance: InstanceInfo


class InstanceRemoved(_Packet, tag="instance_removed"):
    service: str
    node_id: str


class ServiceState(_Packet, tag="service_state"):
    """Registry → host: an instance is ``active``, or ``pending`` while a dependency has no
    live instance (``waiting_for`` names them)."""

    node_id: str
    state: str
    waiting_for: list[str] = []


class StatusQuery(_Packet, tag="status"):
    """Ask the registry for the state of every instance it knows."""


class InstanceStatus(msgspec.Struct):
    instance: InstanceInfo
    state: str
    """``active``, ``pending`` or ``down`` (gone, kept for its downtime)."""
    waiting_for: list[str]
    registered_at: float
    """Unix time of the first registration of this node id."""
    uptime: float
    """Seconds up since the last (re-)registration; 0 when down."""
    downtime: float
    """Seconds down in all, since the first registration."""
    last_heartbeat: float | None
    """Seconds since anything arrived from the instance's host; None if another registry holds it."""
    registry: str
    """Id of the registry holding the instance's connection."""


class StatusReport(_Packet, tag="status_report"):
    registry: str
    instances: list[InstanceStatus]


# -- publish-subscribe (embedded transport) --------------------------------------------------


class EventSubscription(msgspec.Struct, omit_defaults=True):
    """One event a subscribing host wants: broadcast when ``group`` is empty, else exclusive
    within ``group`` (the subscribing service), the instance chosen by ``strategy``."""

    event: str
    group: str = ""
    strategy: str = ""


class Subscribe(_Packet, tag="subscribe"):
    """A subscribing host asks a publisher instance for events of ``service``.

    Replaces what this connection subscribed to before for ``service``. ``since`` (the
    subscriber's start time) orders instances for the ``leader`` strategy.
    """

    service: str
    subscriptions: list[EventSubscription] = []
    since: float = 0.0


class Subscribed(_Packet, tag="subscribed"):
    """The publisher's acknowledgement of ``subscribe``."""

    service: str


class Event(_Packet, tag="event"):
    """One published event. ``id`` is non-zero for an exclusive delivery, which the subscriber
    answers with ``event_ack``. ``payload`` is the raw JSON object; decoded packets view the
    receive buffer, so decode it before ``packet_received`` returns. ``trace``: the
    publisher's trace context, as in ``request`` (optional)."""

    service: str
    event: str
    payload: msgspec.Raw
    id: int = 0
    group: str = ""
    trace: dict[str, str] = {}


class EventAck(_Packet, tag="event_ack"):
    """The subscriber handled exclusive delivery ``id`` (``ok``), or its handler raised."""

    id: int
    ok: bool = True
    message: str = ""


Packet = (
    Hello
    | Challenge
    | Auth
    | Welcome
    | Ping
    | Pong
    | Error
    | Request
    | Response
    | Register
    | Registered
    | Deregister
    | Deregistered
    | Watch
    | Instances
    | InstanceAdded
    | InstanceRemoved
    | ServiceState
    | StatusQuery
    | StatusReport
    | Subscribe
    | Subscribed
    | Event
    | EventAck
)
