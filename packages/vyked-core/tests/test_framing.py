"""The framing codec, fed plain bytes: no sockets."""

from __future__ import annotations

import json

import pytest

from vyked.core.exceptions import FrameTooLarge, ProtocolError
from vyked.core.protocol import FrameDecoder, decode_packet, encode_frame
from vyked.core.protocol.packets import Error, InstanceInfo, Register, Request, Response


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
