"""The trace context of events over Redis rides in a reserved payload field: added to any
payload, taken out before handlers see the fields, ignored when malformed."""

from __future__ import annotations

from typing import Any

import pytest

from vyked.tcp.pubsub.events import TRACE_FIELD, decode_payload, encode_payload, with_trace
from vyked.tcp.pubsub.subscriptions import _trace_of

TRACE = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}


@pytest.mark.parametrize("fields", [{}, {"a": 1}, {"a": {"b": [1, 2]}, "c": "x"}])
def test_any_payload_gains_the_field_and_keeps_its_own(fields: dict[str, Any]) -> None:
    traced = decode_payload(with_trace(encode_payload("S", "e", fields), TRACE))
    assert traced.pop(TRACE_FIELD) == TRACE
    assert traced == fields


def test_the_field_is_taken_out_and_the_packet_trace_wins() -> None:
    fields = {"a": 1, TRACE_FIELD: TRACE}
    assert _trace_of(fields, None) == TRACE
    assert fields == {"a": 1}
    packet_trace = {"traceparent": "00-11111111111111111111111111111111-2222222222222222-01"}
    assert _trace_of({"a": 1, TRACE_FIELD: TRACE}, packet_trace) == packet_trace


@pytest.mark.parametrize("bad", ["text", 3, {"traceparent": 5}, None])
def test_a_malformed_field_is_dropped_and_ignored(bad: object) -> None:
    fields = {"a": 1, TRACE_FIELD: bad}
    assert _trace_of(fields, None) is None
    assert fields == {"a": 1}
