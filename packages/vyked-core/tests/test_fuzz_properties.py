"""Property tests (hypothesis) of the codec and the sans-IO session: whatever bytes arrive, in
whatever chunks, the session returns packets or sets ``failure`` to a vyked error, and never
raises; valid packets survive the wire unchanged; oversized, deeply nested and long input is a
:class:`ProtocolError`. ``nox -s fuzz`` drives a million more inputs through the same code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vyked.core.exceptions import FrameTooLarge, ProtocolError, VykedError
from vyked.core.protocol import auth
from vyked.core.protocol.framing import DEFAULT_MAX_FRAME_SIZE, FrameDecoder, encode_frame
from vyked.core.protocol.packets import (
    PROTOCOL_VERSION,
    Auth,
    Challenge,
    Dependency,
    Error,
    Event,
    EventAck,
    EventSubscription,
    Hello,
    InstanceAdded,
    InstanceInfo,
    InstanceRemoved,
    Instances,
    InstanceStatus,
    Packet,
    Ping,
    Pong,
    Register,
    Registered,
    Request,
    Response,
    ServiceState,
    StatusQuery,
    StatusReport,
    Subscribe,
    Subscribed,
    Watch,
    Welcome,
)
from vyked.core.protocol.session import HANDSHAKE_MAX_FRAME_SIZE, Session

# Moderate example counts keep the normal suite fast; nox -s fuzz is where volume lives. No
# example database: the suite must not write a .hypothesis folder into the tree.
FAST = settings(max_examples=300, deadline=None, database=None)
HEAVY = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

SECRET = b"cluster-secret"
INITIAL_BUFFER = 16 * 1024
"""The decoder's receive buffer before any frame has arrived (``framing._INITIAL_BUFFER_SIZE``)."""
ERROR_MESSAGE_LIMIT = 4096
"""Characters an ``error`` packet's message may hold: it is logged and sent back to a stranger,
so it must not grow with what the stranger sent."""


def frame(packet: Any) -> bytes:
    return bytes(encode_frame(packet))


def raw_frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


# -- strategies ------------------------------------------------------------------------------

texts = st.text(max_size=20)
ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
floats = st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    st.none() | st.booleans() | ints | floats | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(texts, json_values, max_size=4)
instance_infos = st.builds(
    InstanceInfo,
    service=texts,
    version=texts,
    host=texts,
    port=ints,
    node_id=texts,
    kind=st.sampled_from(["tcp", "http"]),
    tls=st.booleans(),
)
instance_statuses = st.builds(
    InstanceStatus,
    instance=instance_infos,
    state=st.sampled_from(["active", "pending", "down"]),
    waiting_for=st.lists(texts, max_size=3),
    registered_at=floats,
    uptime=floats,
    downtime=floats,
    last_heartbeat=st.none() | floats,
    registry=texts,
)

APPLICATION_PACKETS = st.one_of(
    st.builds(Request, id=ints, service=texts, endpoint=texts, params=json_objects),
    st.builds(Response, id=ints, result=json_values, deprecation=st.none() | texts),
    st.builds(Error, code=texts, message=texts, id=ints, error_type=texts, args=st.lists(json_values, max_size=3)),
    st.builds(
        Register,
        instance=instance_infos,
        dependencies=st.lists(st.builds(Dependency, service=texts, version=texts), max_size=3),
    ),
    st.builds(Registered, node_id=texts),
    st.builds(Watch, services=st.lists(texts, max_size=4)),
    st.builds(Instances, service=texts, instances=st.lists(instance_infos, max_size=3)),
    st.builds(InstanceAdded, instance=instance_infos),
    st.builds(InstanceRemoved, service=texts, node_id=texts),
    st.builds(ServiceState, node_id=texts, state=texts, waiting_for=st.lists(texts, max_size=3)),
    st.builds(StatusQuery),
    st.builds(StatusReport, registry=texts, instances=st.lists(instance_statuses, max_size=2)),
    st.builds(
        Subscribe,
        service=texts,
        subscriptions=st.lists(st.builds(EventSubscription, event=texts, group=texts, strategy=texts), max_size=3),
        since=floats,
    ),
    st.builds(Subscribed, service=texts),
    st.builds(
        Event,
        service=texts,
        event=texts,
        payload=json_objects.map(lambda p: msgspec.Raw(msgspec.json.encode(p))),
        id=ints,
        group=texts,
    ),
    st.builds(EventAck, id=ints, ok=st.booleans(), message=texts),
)
"""Packets a ready session hands to its owner (no ping, pong, or connection-level error)."""

PACKETS = st.one_of(
    APPLICATION_PACKETS,
    st.builds(Hello, protocol=ints, node_id=texts, role=texts, nonce=texts),
    st.builds(Welcome, protocol=ints, node_id=texts),
    st.builds(Challenge, nonce=texts, proof=texts),
    st.builds(Auth, proof=texts),
    st.builds(Ping, nonce=ints),
    st.builds(Pong, nonce=ints),
    st.builds(Error, code=texts, message=texts, error_type=texts),
)


def _mistyped(packet: Packet, value: Any, field_index: int) -> bytes:
    """``packet`` as JSON with one field's value replaced by ``value`` (often of another type)."""
    obj = json.loads(msgspec.json.encode(packet))
    fields = sorted(k for k in obj if k != "type")
    if fields:
        obj[fields[field_index % len(fields)]] = value
    return raw_frame(json.dumps(obj).encode())


_SEGMENTS = st.one_of(
    st.binary(max_size=64),
    PACKETS.map(frame),
    st.builds(_mistyped, PACKETS, json_values, st.integers(0, 10)),
    json_values.map(lambda v: raw_frame(json.dumps(v).encode())),
    st.binary(max_size=200).map(raw_frame),
    st.builds(lambda f, cut: f[: max(1, cut)], PACKETS.map(frame), st.integers(0, 40)),  # a frame cut short
    st.sampled_from([b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x01\x00\x00\x00"]),
)
"""Pieces of hostile wire input: raw bytes, valid frames, frames with mistyped fields, frames of
random JSON, random bodies, truncated frames, extreme headers."""


@st.composite
def wire_inputs(draw: st.DrawFn, handshake_prefix: bytes = b"") -> bytes:
    """A prefix (so that later pieces reach a ready session) then hostile pieces."""
    prefix = draw(st.sampled_from([b"", handshake_prefix]))
    return prefix + b"".join(draw(st.lists(_SEGMENTS, max_size=8)))


def chunked(data: bytes, sizes: list[int]) -> list[bytes]:
    """``data`` cut into reads of the given sizes (cycled), as a socket would deliver it."""
    chunks, offset, i = [], 0, 0
    while offset < len(data):
        size = sizes[i % len(sizes)] if sizes else len(data)
        chunks.append(data[offset : offset + size])
        offset += size
        i += 1
    return chunks


read_sizes = st.lists(st.integers(1, 5000), min_size=1, max_size=8)


def pump_reads(target: Session | FrameDecoder, data: bytes, sizes: list[int]) -> Iterator[list[Packet]]:
    """Deliver ``data`` the way ``asyncio.BufferedProtocol`` does: into ``get_buffer()``, at
    most ``size`` bytes a read, then ``buffer_updated``; yields each read's packets before the
    next read (an event's raw payload views the receive buffer until then)."""
    for chunk in chunked(data, sizes):
        offset = 0
        while offset < len(chunk):
            target_view = target.get_buffer()
            n = min(len(target_view), len(chunk) - offset)
            target_view[:n] = chunk[offset : offset + n]
            offset += n
            yield target.buffer_updated(n)


def pump(target: Session | FrameDecoder, data: bytes, sizes: list[int]) -> list[Packet]:
    return [packet for packets in pump_reads(target, data, sizes) for packet in packets]


def hello(nonce: str = "") -> bytes:
    return frame(Hello(protocol=PROTOCOL_VERSION, node_id="fuzz-client", role="client", nonce=nonce))


WELCOME = frame(Welcome(protocol=PROTOCOL_VERSION, node_id="fuzz-server"))


def check_outcome(session: Session, packets: list[Packet]) -> None:
    """What any input may lead to: packets of known kinds, and at most a vyked error."""
    assert all(isinstance(p, Packet) for p in packets)  # type: ignore[arg-type]
    if session.failure is not None:
        assert isinstance(session.failure, VykedError)
        goodbye = session.fail(session.failure)
        if session.refusal is None:
            (error,) = FrameDecoder().feed(goodbye)
            assert isinstance(error, Error) and error.id is None
            assert error.code == session.failure.code
    session.data_to_send()  # whatever the session answered is well-formed bytes
    assert isinstance(session.partial_bytes, int)


def feed_session(session: Session, data: bytes, sizes: list[int], via_buffer: bool) -> list[Packet]:
    if via_buffer:
        return pump(session, data, sizes)
    packets: list[Packet] = []
    for chunk in chunked(data, sizes):
        packets += session.receive_data(chunk)
    return packets


# -- random input never raises -----------------------------------------------------------------


@FAST
@given(
    data=st.one_of(st.binary(max_size=2000), wire_inputs(hello())),
    sizes=read_sizes,
    via_buffer=st.booleans(),
)
def test_random_input_to_an_accepting_session_never_raises(data: bytes, sizes: list[int], via_buffer: bool) -> None:
    session = Session(accepting=True, node_id="fuzz-server")
    packets = feed_session(session, data, sizes, via_buffer)
    check_outcome(session, packets)


@FAST
@given(
    data=st.one_of(st.binary(max_size=2000), wire_inputs(WELCOME)),
    sizes=read_sizes,
    via_buffer=st.booleans(),
)
def test_random_input_to_a_connecting_session_never_raises(data: bytes, sizes: list[int], via_buffer: bool) -> None:
    session = Session(accepting=False, node_id="fuzz-client")
    session.start()
    packets = feed_session(session, data, sizes, via_buffer)
    check_outcome(session, packets)


_HANDSHAKE_SEGMENTS = st.one_of(
    st.builds(Auth, proof=st.text(max_size=70)).map(frame),
    st.builds(Challenge, nonce=st.text(max_size=40), proof=st.text(max_size=70)).map(frame),
    st.builds(Hello, protocol=st.just(PROTOCOL_VERSION), nonce=st.text(max_size=40)).map(frame),
    _SEGMENTS,
)


@FAST
@given(
    accepting=st.booleans(),
    pieces=st.lists(_HANDSHAKE_SEGMENTS, max_size=6),
    sizes=read_sizes,
    via_buffer=st.booleans(),
)
def test_random_handshake_input_to_a_session_with_a_secret_never_raises(
    accepting: bool, pieces: list[bytes], sizes: list[int], via_buffer: bool
) -> None:
    """A stranger's ``auth`` or ``challenge`` may carry any string as its proof."""
    session = Session(accepting=accepting, node_id="fuzz", secret=SECRET)
    session.start()
    prefix = hello(nonce=auth.new_nonce()) if accepting else b""
    packets = feed_session(session, prefix + b"".join(pieces), sizes, via_buffer)
    check_outcome(session, packets)


@pytest.mark.parametrize("accepting", [True, False], ids=["accepting", "connecting"])
@pytest.mark.parametrize("proof", ["é" * 64, "\u2603", "\x00" * 64, "ab"], ids=["e-acute", "snowman", "nul", "short"])
def test_a_non_ascii_or_malformed_proof_is_an_authentication_failure(accepting: bool, proof: str) -> None:
    """The shortest cases of the property above, as plain examples."""
    session = Session(accepting=accepting, node_id="fuzz", secret=SECRET)
    session.start()
    if accepting:
        session.receive_data(hello(nonce=auth.new_nonce()))
        session.data_to_send()
        data = frame(Auth(proof=proof))
    else:
        data = frame(Challenge(nonce=auth.new_nonce(), proof=proof))
    assert session.receive_data(data) == []
    assert session.failure is not None and session.failure.code == "auth_failed"


# -- valid packets round-trip ------------------------------------------------------------------


@FAST
@given(packets=st.lists(PACKETS, min_size=1, max_size=10), sizes=read_sizes, via_buffer=st.booleans())
def test_valid_packets_round_trip_through_the_codec(packets: list[Packet], sizes: list[int], via_buffer: bool) -> None:
    data = b"".join(frame(p) for p in packets)
    decoder = FrameDecoder()
    expected = iter(packets)
    # Compared as they arrive: an event's raw payload views the receive buffer (see Event).
    batches = pump_reads(decoder, data, sizes) if via_buffer else map(decoder.feed, chunked(data, sizes))
    for batch in batches:
        for packet in batch:
            assert packet == next(expected)
    assert next(expected, None) is None
    assert decoder.error is None
    assert decoder.partial_bytes == 0


def test_events_returned_by_one_feed_keep_their_payloads() -> None:
    """``feed`` (and ``Session.receive_data``) hand back every packet of the data at once: an
    event parsed early must not view bytes that later reads of the same call overwrote."""
    events = [
        Event(service="S", event="e", payload=msgspec.Raw(msgspec.json.encode({"i": i, "pad": "y" * 300})), id=i)
        for i in range(200)
    ]
    data = b"".join(frame(e) for e in events)
    assert len(data) > 4 * INITIAL_BUFFER
    assert FrameDecoder().feed(data) == events
    session = Session(accepting=True, node_id="fuzz")
    assert session.receive_data(hello() + data) == events


@FAST
@given(
    packets=st.lists(st.one_of(APPLICATION_PACKETS, st.builds(Ping, nonce=ints)), max_size=12),
    accepting=st.booleans(),
    sizes=read_sizes,
)
def test_a_ready_session_delivers_application_packets_and_answers_every_ping(
    packets: list[Packet], accepting: bool, sizes: list[int]
) -> None:
    session = Session(accepting=accepting, node_id="fuzz")
    session.start()
    pump(session, hello() if accepting else WELCOME, [1000])
    session.data_to_send()
    assert session.ready
    delivered = pump(session, b"".join(frame(p) for p in packets), sizes)
    # Events are excluded from the comparison after the fact: their payloads view the buffer.
    assert [type(p) for p in delivered] == [type(p) for p in packets if not isinstance(p, Ping)]
    assert [p for p in delivered if not isinstance(p, Event)] == [p for p in packets if not isinstance(p, Ping | Event)]
    pongs = FrameDecoder().feed(session.data_to_send())
    assert pongs == [Pong(nonce=p.nonce) for p in packets if isinstance(p, Ping)]
    assert session.failure is None


# -- oversized frames --------------------------------------------------------------------------


@FAST
@given(
    limit=st.integers(0, DEFAULT_MAX_FRAME_SIZE),
    excess=st.integers(1, 2**32 - 1),
    trailing=st.integers(0, 70_000).map(lambda n: bytes(range(256)) * (n // 256)),
    sizes=read_sizes,
)
def test_a_header_over_the_limit_is_refused_before_anything_is_buffered(
    limit: int, excess: int, trailing: bytes, sizes: list[int]
) -> None:
    announced = min(limit + excess, 2**32 - 1)
    decoder = FrameDecoder(max_frame_size=limit)
    assert pump(decoder, announced.to_bytes(4, "big") + trailing, sizes) == []
    assert isinstance(decoder.error, FrameTooLarge)
    assert f"{announced}" in str(decoder.error) and f"{limit}" in str(decoder.error)
    assert decoder.buffered_capacity <= INITIAL_BUFFER  # never sized after the header
    assert decoder.partial_bytes == 0  # and what followed is dropped


@FAST
@given(
    accepting=st.booleans(),
    announced=st.integers(DEFAULT_MAX_FRAME_SIZE + 1, 2**32 - 1),
    ready=st.booleans(),
    sizes=st.lists(st.integers(1, 4), min_size=1, max_size=4),
)
def test_a_session_answers_an_oversized_header_with_frame_too_large(
    accepting: bool, announced: int, ready: bool, sizes: list[int]
) -> None:
    session = Session(accepting=accepting, node_id="fuzz")
    session.start()
    if ready:
        session.receive_data(hello() if accepting else WELCOME)
        session.data_to_send()
    header = announced.to_bytes(4, "big")
    assert feed_session(session, header[:3], [3], via_buffer=True) == []
    assert session.failure is None  # three bytes of a header decide nothing
    feed_session(session, header[3:] + b"x" * 100, sizes, via_buffer=True)
    assert isinstance(session.failure, FrameTooLarge)
    (error,) = FrameDecoder().feed(session.fail(session.failure))
    assert isinstance(error, Error) and error.code == "frame_too_large" and str(announced) in error.message


@FAST
@given(
    announced=st.integers(INITIAL_BUFFER, DEFAULT_MAX_FRAME_SIZE),
    received=st.integers(0, 300_000),
    sizes=read_sizes,
)
def test_a_large_frame_costs_memory_only_as_its_bytes_arrive(announced: int, received: int, sizes: list[int]) -> None:
    """A peer dripping a frame that announces up to the limit holds about what it sent."""
    decoder = FrameDecoder()
    body = b"x" * min(received, announced - 1)
    assert pump(decoder, announced.to_bytes(4, "big") + body, sizes) == []
    assert decoder.error is None
    assert decoder.partial_bytes == 4 + len(body)
    assert decoder.buffered_capacity <= INITIAL_BUFFER + 2 * decoder.partial_bytes + 128 * 1024


@FAST
@given(
    accepting=st.booleans(),
    announced=st.integers(HANDSHAKE_MAX_FRAME_SIZE + 1, DEFAULT_MAX_FRAME_SIZE),
    received=st.integers(0, 100_000),
)
def test_before_the_handshake_only_handshake_sized_frames_are_read(
    accepting: bool, announced: int, received: int
) -> None:
    """A stranger cannot make a session hold more than a handshake packet's worth: a larger
    header is refused at once; after the handshake the same frame is read as it arrives."""
    stranger = Session(accepting=accepting, node_id="fuzz")
    stranger.start()
    stranger.receive_data(announced.to_bytes(4, "big") + b"x" * received)
    assert isinstance(stranger.failure, FrameTooLarge)
    assert stranger.partial_bytes == 0

    member = Session(accepting=accepting, node_id="fuzz")
    member.start()
    body = b"x" * min(received, announced - 1)  # the frame stays incomplete
    member.receive_data((hello() if accepting else WELCOME) + announced.to_bytes(4, "big") + body)
    assert member.ready and member.failure is None
    assert member.partial_bytes == 4 + len(body)


@pytest.mark.parametrize("via_buffer", [False, True], ids=["receive_data", "buffer_updated"])
def test_a_large_request_pipelined_behind_the_hello_is_read(via_buffer: bool) -> None:
    """The shortest case of the property above: frames may follow the handshake in the same read
    (see test_session.py); the one after ``hello`` is no longer a stranger's."""
    request = Request(id=1, service="S", endpoint="e", params={"blob": "x" * 100_000})
    session = Session(accepting=True, node_id="fuzz")
    data = hello() + frame(request)
    packets = pump(session, data, [len(data)]) if via_buffer else session.receive_data(data)
    assert session.failure is None
    assert packets == [request]


# -- deep nesting and long strings -------------------------------------------------------------


def _nested(depth: int, kind: str, closed: bool) -> bytes:
    opening, closing = {"list": (b"[", b"]"), "object": (b'{"a":', b"}"), "mixed": (b'[{"a":', b"}]")}[kind]
    return opening * depth + (b"1" + closing * depth if closed else b"")


def _nesting_frame(where: str, inner: bytes) -> bytes:
    if where == "top":
        return raw_frame(inner)
    if where == "params":
        return raw_frame(b'{"type":"request","id":1,"service":"S","endpoint":"e","params":{"x":' + inner + b"}}")
    if where == "unknown_field":
        return raw_frame(b'{"type":"ping","future":' + inner + b"}")
    return raw_frame(b'{"type":' + inner + b"}")


@HEAVY
@given(
    depth=st.integers(1, 50_000),
    kind=st.sampled_from(["list", "object", "mixed"]),
    where=st.sampled_from(["top", "params", "unknown_field", "type"]),
    closed=st.booleans(),
    ready=st.booleans(),
)
def test_deep_nesting_is_a_protocol_error_never_another_exception(
    depth: int, kind: str, where: str, closed: bool, ready: bool
) -> None:
    data = _nesting_frame(where, _nested(depth, kind, closed))
    decoder = FrameDecoder()
    packets = decoder.feed(data)
    assert packets or isinstance(decoder.error, ProtocolError)
    if depth > 5_000 or not closed:
        assert isinstance(decoder.error, ProtocolError)  # no parser takes 5,000 levels, nor half a value

    session = Session(accepting=True, node_id="fuzz")
    session.receive_data((hello() if ready else b"") + data)
    assert session.failure is None or isinstance(session.failure, ProtocolError)
    check_outcome(session, [])


def _long_string_frame(where: str, text: bytes) -> tuple[bytes, bool]:
    """A frame with a long string at ``where``; whether the frame is a valid packet."""
    quoted = b'"' + text + b'"'
    return {
        "valid_param": (b'{"type":"request","id":1,"service":"S","endpoint":"e","params":{"x":' + quoted + b"}}", True),
        "type": (b'{"type":' + quoted + b"}", False),
        "mistyped_id": (b'{"type":"request","id":' + quoted + b',"service":"S","endpoint":"e"}', False),
        "unterminated": (b'{"type":"request","id":1,"service":"' + text, False),
        "bad_escape": (b'{"type":"pong","x":"' + text + b'\\q"}', False),
        "bad_utf8": (b'{"type":"request","id":1,"service":"' + text + b'\xff\xfe","endpoint":"e"}', False),
        "as_key": (b'{"type":"pong",' + quoted + b":1," + quoted + b":2}", True),
    }[where]


LONG_STRING_PLACES = ["valid_param", "type", "mistyped_id", "unterminated", "bad_escape", "bad_utf8", "as_key"]


@HEAVY
@given(
    length=st.integers(1, 1_000_000),
    char=st.sampled_from([b"x", b"\\n", b"\\u00e9", "\u00e9".encode(), b"\\\\"]),
    where=st.sampled_from(LONG_STRING_PLACES),
    small_limit=st.booleans(),
)
def test_long_strings_are_decoded_or_a_protocol_error(length: int, char: bytes, where: str, small_limit: bool) -> None:
    text = char * max(1, length // len(char))
    body, valid = _long_string_frame(where, text)
    limit = len(body) - 1 if small_limit else DEFAULT_MAX_FRAME_SIZE
    decoder = FrameDecoder(max_frame_size=limit)
    packets = decoder.feed(raw_frame(body))
    if small_limit:
        assert packets == [] and isinstance(decoder.error, FrameTooLarge)
    elif valid:
        assert decoder.error is None and len(packets) == 1
    else:
        assert packets == [] and isinstance(decoder.error, ProtocolError)


@HEAVY
@given(
    length=st.integers(ERROR_MESSAGE_LIMIT, 1_000_000),
    where=st.sampled_from(["type", "mistyped_id", "unterminated", "bad_escape", "bad_utf8"]),
)
def test_the_error_about_a_long_string_does_not_repeat_it(length: int, where: str) -> None:
    """The error a stranger's frame earns is logged and sent back to it: a 16 MiB string in
    ``type`` must not become a 16 MiB log line and a 16 MiB ``error`` frame."""
    body, _ = _long_string_frame(where, b"x" * length)
    session = Session(accepting=True, node_id="fuzz")
    session.receive_data(hello() + raw_frame(body))  # after the handshake, frames up to 16 MiB are read
    assert isinstance(session.failure, ProtocolError)
    assert len(str(session.failure)) <= ERROR_MESSAGE_LIMIT
    assert len(session.fail(session.failure)) <= ERROR_MESSAGE_LIMIT + 200


# -- floods --------------------------------------------------------------------------------------


@settings(FAST, max_examples=100)
@given(count=st.integers(1, 3_000), sizes=read_sizes, accepting=st.booleans())
def test_a_flood_of_pings_before_the_handshake_is_answered_and_nothing_else(
    count: int, sizes: list[int], accepting: bool
) -> None:
    session = Session(accepting=accepting, node_id="fuzz")
    session.start()
    assert pump(session, frame(Ping(nonce=1)) * count, sizes) == []
    assert FrameDecoder().feed(session.data_to_send()) == [Pong(nonce=1)] * count
    assert session.failure is None and not session.ready
    assert session.frames_received == count
