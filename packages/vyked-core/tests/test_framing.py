"""The framing codec, fed plain bytes: no sockets."""

from __future__ import annotations

import json

import msgspec
import pytest

from vyked.core.exceptions import FrameTooLarge, ProtocolError
from vyked.core.protocol import FrameDecoder, decode_packet, encode_frame
from vyked.core.protocol.packets import Error, Event, InstanceInfo, Register, Request, Response


def frame_of(obj: object) -> bytes:
    body = json.dumps(obj).encode()
    return len(body).to_bytes(4, "big") + body


def test_round_trip_of_every_field() -> None:
    packet = Request(id=7, service="S", endpoint="create", params={"user": "ann", "n": [1, 2.5, None]})
    assert FrameDecoder().feed(bytes(encode_frame(packet))) == [packet]


def test_frame_is_length_prefixed_json() -> None:
    frame = bytes(encode_frame(Response(id=1, result={"a": 1})))
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    assert json.loads(frame[4:]) == {"type": "response", "id": 1, "result": {"a": 1}}


def test_frame_split_across_reads_byte_by_byte() -> None:
    packets = [Request(id=i, service="S", endpoint="e", params={"i": i}) for i in range(3)]
    data = b"".join(bytes(encode_frame(p)) for p in packets)
    decoder = FrameDecoder()
    received = []
    for i in range(len(data)):
        received += decoder.feed(data[i : i + 1])
    assert received == packets


def test_many_frames_in_one_read() -> None:
    packets = [Response(id=i, result=i) for i in range(1000)]
    data = b"".join(bytes(encode_frame(p)) for p in packets)
    assert FrameDecoder().feed(data) == packets


def test_frame_larger_than_the_initial_buffer() -> None:
    big = Response(id=1, result="x" * 3_000_000)
    data = bytes(encode_frame(big))
    decoder = FrameDecoder()
    assert decoder.feed(data[:100]) == []
    assert decoder.feed(data[100:]) == [big]
    # the decoder is reusable afterwards
    assert decoder.feed(bytes(encode_frame(Response(id=2)))) == [Response(id=2)]


def test_oversized_frame_is_refused_from_its_header() -> None:
    decoder = FrameDecoder(max_frame_size=1024)
    assert decoder.feed((2048).to_bytes(4, "big")) == []
    assert isinstance(decoder.error, FrameTooLarge)
    assert "2048" in str(decoder.error) and "1024" in str(decoder.error)


def test_packets_before_a_bad_frame_are_kept() -> None:
    good = Response(id=1, result=1)
    decoder = FrameDecoder()
    packets = decoder.feed(bytes(encode_frame(good)) + frame_of({"type": "nope"}) + bytes(encode_frame(good)))
    assert packets == [good]
    assert isinstance(decoder.error, ProtocolError)
    assert decoder.feed(bytes(encode_frame(good))) == []  # stops parsing after an error


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "malformed"),
        (b"[1, 2]", "Expected `object`"),
        (json.dumps({"id": 1}).encode(), "missing required field `type`"),
        (json.dumps({"type": "teleport"}).encode(), "Invalid value 'teleport'"),
        (json.dumps({"type": "request", "id": "one", "service": "S", "endpoint": "e"}).encode(), "$.id"),
        (json.dumps({"type": "request", "id": 1, "service": "S"}).encode(), "endpoint"),
        (b"\xff\xfe", "malformed"),
    ],
)
def test_invalid_frames_name_the_problem(body: bytes, fragment: str) -> None:
    decoder = FrameDecoder()
    assert decoder.feed(len(body).to_bytes(4, "big") + body) == []
    assert decoder.error is not None
    assert fragment in str(decoder.error)
    with pytest.raises(ProtocolError, match="malformed frame"):
        decode_packet(body)


def test_nested_structs_validate() -> None:
    register = Register(instance=InstanceInfo("S", "1", "127.0.0.1", 4000, "n1"))
    assert FrameDecoder().feed(bytes(encode_frame(register))) == [register]
    bad = {"type": "register", "instance": {"service": "S", "version": "1", "host": "h", "port": "x", "node_id": "n"}}
    decoder = FrameDecoder()
    decoder.feed(frame_of(bad))
    assert "$.instance.port" in str(decoder.error)


def test_unserialisable_packet_raises_type_error() -> None:
    with pytest.raises(TypeError):
        encode_frame(Request(id=1, service="S", endpoint="e", params={"x": object()}))


def test_error_packet_defaults_are_omitted() -> None:
    frame = bytes(encode_frame(Error(code="bad_frame", message="m")))
    assert json.loads(frame[4:]) == {"type": "error", "code": "bad_frame", "message": "m"}


# -- hostile input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 1000 + b"]" * 1000,
        b'{"a":' * 1000 + b"1" + b"}" * 1000,
        b'{"type":"request","id":1,"service":"S","endpoint":"e","params":{"x":' + b"[" * 1000 + b"]" * 1000 + b"}}",
        b'{"type":"request","id":1,"service":"S","endpoint":"e","params":' + b'{"a":' * 100_000 + b"1" + b"}" * 100_001,
    ],
    ids=["arrays", "objects", "arrays-in-params", "objects-in-params-100k"],
)
def test_deeply_nested_json_is_a_bad_frame(body: bytes) -> None:
    decoder = FrameDecoder()
    assert decoder.feed(len(body).to_bytes(4, "big") + body) == []
    assert type(decoder.error) is ProtocolError
    assert decoder.error.code == "bad_frame"
    assert "malformed frame" in str(decoder.error)
    with pytest.raises(ProtocolError, match="malformed frame") as info:
        decode_packet(body)
    assert info.value.code == "bad_frame"


def test_a_dripped_frame_holds_memory_in_proportion_to_what_arrived() -> None:
    size = 16 * 1024 * 1024
    decoder = FrameDecoder()
    decoder.feed(size.to_bytes(4, "big") + b"x" * 10)
    decoder.get_buffer()  # what the transport asks for before its next read
    assert decoder.partial_bytes == 14
    assert decoder.buffered_capacity <= 64 * 1024
    received = 14
    for _ in range(300):
        decoder.feed(b"x" * 100)
        decoder.get_buffer()
        received += 100
        assert decoder.partial_bytes == received
        assert decoder.buffered_capacity <= 2 * received + 80 * 1024
    assert decoder.error is None


def test_a_frame_at_the_limit_split_in_many_reads_decodes_in_a_few_growths() -> None:
    big = Response(id=1, result="x" * (16 * 1024 * 1024 - 100))
    data = bytes(encode_frame(big)) + bytes(encode_frame(Response(id=2)))
    assert len(data) - 4 - len(encode_frame(Response(id=2))) <= 16 * 1024 * 1024
    decoder = FrameDecoder()
    received: list[object] = []
    capacities = {decoder.buffered_capacity}
    for offset in range(0, len(data), 64 * 1024):
        received += decoder.feed(data[offset : offset + 64 * 1024])
        capacities.add(decoder.buffered_capacity)
    assert received == [big, Response(id=2)]
    assert len(capacities) <= 12
    assert decoder.partial_bytes == 0


def test_partial_bytes_counts_only_the_frame_being_received() -> None:
    frame = bytes(encode_frame(Response(id=1, result="abc")))
    decoder = FrameDecoder()
    assert decoder.partial_bytes == 0
    assert decoder.feed(frame[:2]) == []
    assert decoder.partial_bytes == 2
    assert decoder.feed(frame[2:] + frame + frame[:7]) == [Response(id=1, result="abc")] * 2
    assert decoder.partial_bytes == 7
    assert decoder.feed(frame[7:]) == [Response(id=1, result="abc")]
    assert decoder.partial_bytes == 0


def test_an_oversized_header_is_refused_before_anything_more_is_buffered() -> None:
    decoder = FrameDecoder(max_frame_size=1024)
    initial = decoder.buffered_capacity
    decoder.feed((1025).to_bytes(4, "big"))
    assert isinstance(decoder.error, FrameTooLarge)
    for _ in range(100):  # whatever the peer keeps sending is dropped, not held
        decoder.feed(b"x" * 10_000)
        decoder.get_buffer()
    assert decoder.partial_bytes == 0
    assert decoder.buffered_capacity == initial


def test_the_buffer_shrinks_after_a_large_frame() -> None:
    big = bytes(encode_frame(Response(id=1, result="x" * 5_000_000)))
    small = bytes(encode_frame(Response(id=2)))
    decoder = FrameDecoder()
    # a large frame followed by the start of the next: the buffer is not emptied, yet shrinks
    assert len(decoder.feed(big + small[:3])) == 1
    decoder.get_buffer()
    assert decoder.buffered_capacity <= 64 * 1024
    assert decoder.feed(small[3:]) == [Response(id=2)]


def test_the_error_about_a_long_string_does_not_repeat_it() -> None:
    body = b'{"type": "' + b"x" * 1_000_000 + b'"}'
    decoder = FrameDecoder()
    decoder.feed(len(body).to_bytes(4, "big") + body)
    assert decoder.error is not None
    assert len(str(decoder.error)) <= 4096
    assert str(decoder.error).endswith("at `$.type`")  # the path is kept


def test_events_from_one_feed_keep_their_payloads() -> None:
    payloads = [msgspec.Raw(b'{"i": %d, "pad": "%s"}' % (i, b"y" * 300)) for i in range(200)]
    events = [Event(service="S", event="e", payload=payload, id=i) for i, payload in enumerate(payloads)]
    data = b"".join(bytes(encode_frame(e)) for e in events)
    assert FrameDecoder().feed(data) == events  # earlier reads' payloads were not overwritten
