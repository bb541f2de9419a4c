"""Events on their own: checking and encoding payloads, and the names events travel under.

An event is identified by an :class:`EventKey`: the publishing service, its major version
(a client of version ``1`` hears publishers ``1``, ``1.0`` and ``1.4.2``) and the event name.
Payloads are JSON objects, encoded once at the publish call site by the wire codec.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import msgspec

from vyked.core.exceptions import PublishError
from vyked.core.protocol import ENCODE_ERRORS
from vyked.core.versions import major, normalize

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(dict[str, Any])

PREFIX = "vyked"
RETRY_CONSUMER = "~retry"
"""Redis: the pseudo-consumer that holds exclusive events whose handler raised, until another
instance claims them."""


class EventKey(NamedTuple):
    """Which event: publishing service, its major version, event name."""

    service: str
    major: str
    event: str

    @classmethod
    def of(cls, service: str, version: object, event: str) -> EventKey:
        return cls(service, major(normalize(version)), event)

    def __str__(self) -> str:
        return f"{self.service}.{self.event} (v{self.major})"


def encode_payload(service: str, event: str, payload: object) -> bytes:
    """The JSON bytes of an event, or :class:`PublishError` naming the field that cannot be sent.

    ``payload`` is what the ``@publish`` method returned: a dict, usually ``locals()``, whose
    ``self`` entry is dropped.
    """
    if not isinstance(payload, dict):
        raise PublishError(
            f"@publish method {service}.{event}() must return a dict of the event's fields "
            f"(return locals()), got {type(payload).__name__}"
        )
    fields = {k: v for k, v in payload.items() if k != "self"} if "self" in payload else payload
    try:
        return _encoder.encode(fields)
    except ENCODE_ERRORS as exc:
        try:
            path = _offending_path(fields, "") or "?"
        except RecursionError:  # the payload contains itself
            path = "?"
        raise PublishError(
            f"cannot publish {service}.{event}: field {path!r} is not JSON-serialisable ({exc})"
        ) from None


TRACE_FIELD = "__vyked_trace__"
"""Redis only: the payload field carrying the publisher's trace context (Redis messages have
no headers; vyked connections use the ``event`` packet's ``trace`` field). Subscribers take
it out before handlers see the fields."""
_TRACE_HEAD = b'{"' + TRACE_FIELD.encode() + b'":'


def with_trace(payload: bytes, trace: Mapping[str, str]) -> bytes:
    """``payload`` (an encoded JSON object) with ``trace`` as its :data:`TRACE_FIELD`."""
    head = _TRACE_HEAD + _encoder.encode(trace)
    return head + b"}" if payload == b"{}" else head + b"," + payload[1:]


def decode_payload(data: bytes | msgspec.Raw) -> dict[str, Any]:
    """The fields of an event, from its JSON bytes."""
    return _decoder.decode(data)


def _encodes(value: object) -> bool:
    try:
        _encoder.encode(value)
    except ENCODE_ERRORS:
        return False
    return True


def _offending_path(value: object, path: str) -> str | None:
    """Dotted path of the first part of ``value`` the codec rejects (``user.tags[2]``)."""
    if _encodes(value):
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not _encodes({key: None}):
                return f"{path}[{key!r}]" if path else repr(key)
            found = _offending_path(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _offending_path(item, f"{path}[{index}]")
            if found is not None:
                return found
    return path


# -- names in Redis ---------------------------------------------------------------------------


def channel_name(key: EventKey) -> str:
    """Redis pub-sub channel of broadcast deliveries."""
    return f"{PREFIX}:event:{key.service}:{key.major}:{key.event}"


def stream_name(key: EventKey) -> str:
    """Redis stream of exclusive deliveries; each subscribing service is a consumer group."""
    return f"{PREFIX}:stream:{key.service}:{key.major}:{key.event}"


def alive_key(consumer: str) -> str:
    """Redis key a subscribing host refreshes while it lives (its heartbeat)."""
    return f"{PREFIX}:alive:{consumer}"


def members_key(group: str) -> str:
    """Redis sorted set of a subscribing service's instances, by start time (for ``LEADER``)."""
    return f"{PREFIX}:members:{group}"
