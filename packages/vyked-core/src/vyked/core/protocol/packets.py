"""The packets of the vyked wire protocol, as typed msgspec structs.

Every packet is a JSON object whose ``type`` field names its kind. Decoding validates
field types, so a packet that reaches a handler is well formed. ``docs/protocol.md``
is the normative description; keep the two in step.
"""

from __future__ import annotations

from typing import Any

import msgspec

PROTOCOL_VERSION = 1


class _Packet(msgspec.Struct, tag_field="type", omit_defaults=True):
    pass


# -- connection set-up and liveness -------------------------------------------------------


class Hello(_Packet, tag="hello"):
    """First packet on every connection, from the side that connected."""

    protocol: int
    node_id: str = ""
    role: str = ""


class Welcome(_Packet, tag="welcome"):
    """The accepting side's answer to a compatible ``hello``."""

    protocol: int
    node_id: str = ""


class Ping(_Packet, tag="ping"):
    """Liveness probe; the peer answers with ``pong``."""

    nonce: int = 0


class Pong(_Packet, tag="pong"):
    nonce: int = 0


class Error(_Packet, tag="error"):
    """An error: the answer to request ``id``, or (``id`` null) about the connection itself."""

    code: str
    message: str
    id: int | None = None
    error_type: str = ""
    args: list[Any] = []


# -- request-response -----------------------------------------------------------------------


class Request(_Packet, tag="request"):
    id: int
    service: str
    endpoint: str
    params: dict[str, Any] = {}


class Response(_Packet, tag="response"):
    id: int
    result: Any = None
    deprecation: str | None = None


# -- registry ----------------------------------------------------------------------------------


class Dependency(msgspec.Struct, omit_defaults=True):
    service: str
    version: str


class InstanceInfo(msgspec.Struct):
    """One running service instance, as the registry knows it."""

    service: str
    version: str
    host: str
    port: int
    node_id: str
    kind: str = "tcp"


class Register(_Packet, tag="register"):
    """A service instance announces itself and the services it depends on."""

    instance: InstanceInfo
    dependencies: list[Dependency] = []


class Registered(_Packet, tag="registered"):
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


Packet = (
    Hello
    | Welcome
    | Ping
    | Pong
    | Error
    | Request
    | Response
    | Register
    | Registered
    | Watch
    | Instances
    | InstanceAdded
    | InstanceRemoved
)
