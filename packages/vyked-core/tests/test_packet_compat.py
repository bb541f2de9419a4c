"""Optional packet fields added after protocol version 1 (``request.app``, ``request.trace``,
``event.trace``): peers that predate them read the packets as before, and packets from such
peers decode with the fields empty."""

from __future__ import annotations

from typing import Any

import msgspec

from vyked.core.protocol.packets import Event, Request


class OldRequest(msgspec.Struct, tag_field="type", tag="request", omit_defaults=True):
    """``request`` as protocol version 1 first shipped it."""

    id: int
    service: str
    endpoint: str
    params: dict[str, Any] = {}


class OldEvent(msgspec.Struct, tag_field="type", tag="event", omit_defaults=True):
    service: str
    event: str
    payload: msgspec.Raw
    id: int = 0
    group: str = ""


TRACE = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "baggage": "user=alice"}


def test_an_old_peer_reads_a_new_request() -> None:
    data = msgspec.json.encode(Request(id=7, service="S", endpoint="e", params={"x": 1}, app="billing", trace=TRACE))
    old = msgspec.json.decode(data, type=OldRequest)
    assert (old.id, old.service, old.endpoint, old.params) == (7, "S", "e", {"x": 1})


def test_an_old_peers_request_decodes_without_app_or_trace() -> None:
    data = msgspec.json.encode(OldRequest(id=1, service="S", endpoint="e"))
    new = msgspec.json.decode(data, type=Request)
    assert (new.app, new.trace) == ("", {})


def test_empty_optional_fields_are_not_sent() -> None:
    assert msgspec.json.encode(Request(id=1, service="S", endpoint="e")) == (
        b'{"type":"request","id":1,"service":"S","endpoint":"e"}'
    )


def test_an_old_peer_reads_a_new_event() -> None:
    data = msgspec.json.encode(Event(service="S", event="e", payload=msgspec.Raw(b'{"a":1}'), id=3, trace=TRACE))
    old = msgspec.json.decode(data, type=OldEvent)
    assert (old.service, old.event, bytes(old.payload), old.id) == ("S", "e", b'{"a":1}', 3)
    assert msgspec.json.decode(data, type=Event).trace == TRACE
