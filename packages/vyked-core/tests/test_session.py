"""The sans-IO session: handshake, ping/pong and protocol failures, with plain bytes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from vyked.core.exceptions import (
    ConnectionLost,
    FrameTooLarge,
    ProtocolError,
    ProtocolVersionMismatch,
    RemoteError,
    ServiceUnavailable,
    VykedError,
)
from vyked.core.protocol.framing import FrameDecoder, encode_frame
from vyked.core.protocol.packets import (
    PROTOCOL_VERSION,
    Error,
    Hello,
    Packet,
    Ping,
    Pong,
    Request,
    Response,
    Welcome,
)
from vyked.core.protocol.session import Session

HELLO = bytes(encode_frame(Hello(protocol=PROTOCOL_VERSION, node_id="client-1", role="host")))
WELCOME = bytes(encode_frame(Welcome(protocol=PROTOCOL_VERSION, node_id="server-1")))
REQUEST_1 = Request(id=1, service="Calc", endpoint="add", params={"a": 1, "b": 2})
REQUEST_2 = Request(id=2, service="Calc", endpoint="add", params={"a": 3, "b": 4})
RESPONSE_1 = Response(id=1, result=3)


def frame(packet: Any) -> bytes:
    return bytes(encode_frame(packet))


def raw_frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


def decode_all(data: bytes) -> list[Packet]:
    decoder = FrameDecoder()
    packets = decoder.feed(data)
    assert decoder.error is None
    return packets


def accepting(max_frame_size: int = 16 * 1024 * 1024) -> Session:
    return Session(accepting=True, node_id="server-1", role="registry", max_frame_size=max_frame_size)


def connecting() -> Session:
    return Session(accepting=False, node_id="client-1", role="host")


def ready_acceptor(max_frame_size: int = 16 * 1024 * 1024) -> Session:
    session = accepting(max_frame_size)
    assert session.receive_data(HELLO) == []
    session.data_to_send()
    assert session.ready
    return session


def ready_connector() -> Session:
    session = connecting()
    session.start()
    assert session.receive_data(WELCOME) == []
    assert session.ready
    return session


# -- the handshake -------------------------------------------------------------------------


def test_connecting_side_starts_with_hello() -> None:
    session = connecting()
    assert decode_all(session.start()) == [Hello(protocol=PROTOCOL_VERSION, node_id="client-1", role="host")]
    assert not session.ready
    assert session.failure is None


def test_accepting_side_sends_nothing_first() -> None:
    session = accepting()
    assert session.start() == b""
    assert session.data_to_send() == b""
    assert not session.ready


def test_accepting_side_answers_hello_with_welcome() -> None:
    session = accepting()
    assert session.receive_data(HELLO) == []
    assert session.ready
    assert session.failure is None
    assert (session.peer_node_id, session.peer_role) == ("client-1", "host")
    assert decode_all(session.data_to_send()) == [Welcome(protocol=PROTOCOL_VERSION, node_id="server-1")]
    assert session.data_to_send() == b""  # handed out once


def test_connecting_side_becomes_ready_on_welcome() -> None:
    session = connecting()
    session.start()
    assert session.receive_data(WELCOME) == []
    assert session.ready
    assert session.peer_node_id == "server-1"
    assert session.data_to_send() == b""
    assert session.failure is None


def test_the_two_sides_complete_the_handshake_with_each_other() -> None:
    client, server = connecting(), accepting()
    assert server.receive_data(client.start()) == []
    assert client.receive_data(server.data_to_send()) == []
    assert client.ready and server.ready
    assert (client.peer_node_id, server.peer_node_id, server.peer_role) == ("server-1", "client-1", "host")
    assert server.receive_data(bytes(client.send(REQUEST_1))) == [REQUEST_1]
    assert client.receive_data(bytes(server.send(RESPONSE_1))) == [RESPONSE_1]


def test_unknown_fields_in_hello_are_ignored() -> None:
    session = accepting()
    body = json.dumps({"type": "hello", "protocol": PROTOCOL_VERSION, "node_id": "n", "future_field": [1]})
    assert session.receive_data(raw_frame(body.encode())) == []
    assert session.ready and session.failure is None


# -- application packets -------------------------------------------------------------------


def test_application_packets_follow_the_handshake_in_the_same_chunk() -> None:
    session = accepting()
    assert session.receive_data(HELLO + frame(REQUEST_1) + frame(REQUEST_2)) == [REQUEST_1, REQUEST_2]
    assert session.ready


def test_application_packets_on_a_ready_session_are_returned_in_order() -> None:
    session = ready_connector()
    assert session.receive_data(frame(RESPONSE_1) + frame(REQUEST_2)) == [RESPONSE_1, REQUEST_2]
    assert session.data_to_send() == b""


@pytest.mark.parametrize("make", [ready_acceptor, ready_connector], ids=["accepting", "connecting"])
def test_ping_is_answered_with_pong_and_not_returned(make: Callable[[], Session]) -> None:
    session = make()
    assert session.receive_data(frame(Ping(nonce=7)) + frame(REQUEST_1) + frame(Ping(nonce=8))) == [REQUEST_1]
    assert decode_all(session.data_to_send()) == [Pong(nonce=7), Pong(nonce=8)]
    assert session.failure is None


def test_ping_is_answered_even_during_the_handshake() -> None:
    session = accepting()
    assert session.receive_data(frame(Ping(nonce=3))) == []
    assert decode_all(session.data_to_send()) == [Pong(nonce=3)]
    assert not session.ready
    assert session.failure is None
    session.receive_data(HELLO)
    assert session.ready


@pytest.mark.parametrize("make", [ready_acceptor, ready_connector], ids=["accepting", "connecting"])
def test_pong_is_swallowed(make: Callable[[], Session]) -> None:
    session = make()
    assert session.receive_data(frame(Pong(nonce=5))) == []
    assert session.data_to_send() == b""
    assert session.failure is None
    assert session.ready


def test_ping_frame_from_session() -> None:
    session = ready_connector()
    assert decode_all(bytes(session.ping())) == [Ping()]


# -- protocol violations -------------------------------------------------------------------

Violation = tuple[Callable[[], Session], bytes, type[VykedError], str]

VIOLATIONS: dict[str, Violation] = {
    "request before hello": (accepting, frame(REQUEST_1), ProtocolError, "bad_frame"),
    "welcome sent to the acceptor": (accepting, WELCOME, ProtocolError, "bad_frame"),
    "response before welcome": (connecting, frame(RESPONSE_1), ProtocolError, "bad_frame"),
    "hello sent to the connector": (connecting, HELLO, ProtocolError, "bad_frame"),
    "wrong protocol version": (
        accepting,
        frame(Hello(protocol=PROTOCOL_VERSION + 1, node_id="x")),
        ProtocolVersionMismatch,
        "protocol_version",
    ),
    "not json": (accepting, raw_frame(b"{not json"), ProtocolError, "bad_frame"),
    "json array": (accepting, raw_frame(b"[1, 2]"), ProtocolError, "bad_frame"),
    "unknown type": (accepting, raw_frame(b'{"type": "bogus"}'), ProtocolError, "bad_frame"),
    "mistyped field": (accepting, raw_frame(b'{"type": "hello", "protocol": "one"}'), ProtocolError, "bad_frame"),
    "missing field": (accepting, raw_frame(b'{"type": "hello"}'), ProtocolError, "bad_frame"),
    "malformed after the handshake": (ready_acceptor, raw_frame(b"\xff\xfe"), ProtocolError, "bad_frame"),
    "oversized frame": (
        lambda: Session(accepting=True, max_frame_size=64),
        (65).to_bytes(4, "big"),  # the header alone is enough to refuse it
        FrameTooLarge,
        "frame_too_large",
    ),
    "oversized after the handshake": (
        lambda: ready_acceptor(max_frame_size=128),
        (10_000_000).to_bytes(4, "big") + b"x" * 10,
        FrameTooLarge,
        "frame_too_large",
    ),
}


@pytest.mark.parametrize("case", list(VIOLATIONS))
def test_violation_sets_failure_and_fail_sends_an_error_frame(case: str) -> None:
    make, data, error_class, code = VIOLATIONS[case]
    session = make()
    session.start()
    was_ready = session.ready
    assert session.receive_data(data) == []
    failure = session.failure
    assert type(failure) is error_class
    assert failure.code == code
    assert session.ready == was_ready  # a violation alone does not change readiness; fail() does
    if not was_ready:
        assert session.data_to_send() == b""  # no welcome for a bad hello
    sent = decode_all(session.fail(failure))
    assert sent == [Error(code=code, message=str(failure))]
    assert sent[0].id is None  # about the connection, not a request
    assert session.closed and not session.ready
    assert session.failure is failure
    assert session.fail(failure) == b""  # only once
    assert session.receive_data(frame(REQUEST_2)) == []  # nothing is parsed any more


def test_version_mismatch_message_names_both_versions() -> None:
    session = accepting()
    session.receive_data(frame(Hello(protocol=99)))
    assert isinstance(session.failure, ProtocolVersionMismatch)
    assert "99" in str(session.failure)
    assert str(PROTOCOL_VERSION) in str(session.failure)


def test_oversized_frame_message_gives_both_sizes() -> None:
    session = Session(accepting=True, max_frame_size=64)
    session.receive_data((65).to_bytes(4, "big"))
    assert isinstance(session.failure, FrameTooLarge)
    assert "65" in str(session.failure) and "64" in str(session.failure)


def test_frame_of_exactly_the_limit_is_accepted() -> None:
    body = json.dumps({"type": "request", "id": 1, "service": "S", "endpoint": "e"}).encode()
    limit = len(body) + 5
    padded = body + b" " * 5
    session = Session(accepting=True, max_frame_size=limit)
    session.receive_data(HELLO)
    assert session.receive_data(raw_frame(padded)) == [Request(id=1, service="S", endpoint="e")]
    assert session.failure is None


def test_packets_before_a_bad_frame_in_the_same_chunk_are_returned() -> None:
    session = accepting()
    chunk = HELLO + frame(REQUEST_1) + frame(Ping(nonce=1)) + frame(REQUEST_2) + raw_frame(b"junk") + frame(RESPONSE_1)
    assert session.receive_data(chunk) == [REQUEST_1, REQUEST_2]
    assert isinstance(session.failure, ProtocolError)
    assert session.failure.code == "bad_frame"
    # what the session answered before the bad frame is still handed out
    assert decode_all(session.data_to_send()) == [
        Welcome(protocol=PROTOCOL_VERSION, node_id="server-1"),
        Pong(nonce=1),
    ]


def test_packets_before_an_oversized_frame_in_the_same_chunk_are_returned() -> None:
    session = Session(accepting=True, max_frame_size=200)
    chunk = HELLO + frame(REQUEST_1) + (201).to_bytes(4, "big") + b"{" * 50
    assert session.receive_data(chunk) == [REQUEST_1]
    assert isinstance(session.failure, FrameTooLarge)


def test_packets_after_a_handshake_violation_in_the_same_chunk_are_dropped() -> None:
    session = accepting()
    assert session.receive_data(frame(REQUEST_1) + HELLO + frame(REQUEST_2)) == []
    assert isinstance(session.failure, ProtocolError)
    assert not session.ready
    assert session.data_to_send() == b""  # the later hello was not answered


def test_failure_on_a_healthy_session_uses_the_given_error() -> None:
    session = ready_acceptor()
    error = ServiceUnavailable("going away")
    assert decode_all(session.fail(error)) == [Error(code="service_unavailable", message="going away")]
    assert session.failure is error


# -- the peer refuses the handshake ------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "error_class"),
    [
        ("protocol_version", ProtocolVersionMismatch),
        ("bad_frame", ProtocolError),
        ("frame_too_large", FrameTooLarge),
        ("service_unavailable", ServiceUnavailable),
        ("something_new", RemoteError),
    ],
)
def test_error_during_handshake_is_the_failure_and_nothing_is_sent_back(
    code: str, error_class: type[VykedError]
) -> None:
    session = connecting()
    session.start()
    assert session.receive_data(frame(Error(code=code, message="refused by peer"))) == []
    failure = session.failure
    assert type(failure) is error_class
    assert "refused by peer" in str(failure)
    assert not session.ready
    assert session.fail(failure) == b""  # the peer itself ended it: no error back
    assert session.closed
    with pytest.raises(ConnectionLost):
        session.send(REQUEST_1)


def test_error_packet_after_the_handshake_is_an_application_packet() -> None:
    session = ready_connector()
    error = Error(code="timeout", message="late", id=4)
    assert session.receive_data(frame(error)) == [error]
    assert session.failure is None


# -- any split of the bytes gives the same result ------------------------------------------------


def _run(make: Callable[[], Session], chunks: list[bytes]) -> tuple[Any, ...]:
    session = make()
    session.start()
    packets: list[Packet] = []
    answered = b""
    for chunk in chunks:
        packets += session.receive_data(chunk)
        answered += session.data_to_send()
    failure = session.failure
    return (
        packets,
        decode_all(answered),
        session.ready,
        session.peer_node_id,
        session.peer_role,
        None if failure is None else (type(failure), str(failure)),
    )


STREAMS: dict[str, tuple[Callable[[], Session], bytes]] = {
    "accepting, healthy": (
        accepting,
        HELLO + frame(REQUEST_1) + frame(Ping(nonce=9)) + frame(Pong()) + frame(REQUEST_2),
    ),
    "connecting, healthy": (connecting, WELCOME + frame(Ping(nonce=1)) + frame(RESPONSE_1) + frame(REQUEST_2)),
    "accepting, bad frame after packets": (accepting, HELLO + frame(REQUEST_1) + raw_frame(b"nope") + frame(REQUEST_2)),
    "accepting, oversized after packets": (
        lambda: Session(accepting=True, node_id="s", max_frame_size=100),
        HELLO + frame(REQUEST_1) + (101).to_bytes(4, "big") + b"a" * 101,
    ),
    "accepting, wrong version": (accepting, frame(Hello(protocol=7)) + frame(REQUEST_1)),
    "connecting, refused": (connecting, frame(Error(code="protocol_version", message="no")) + WELCOME),
}


@pytest.mark.parametrize("case", list(STREAMS))
def test_byte_at_a_time_equals_one_chunk(case: str) -> None:
    make, data = STREAMS[case]
    whole = _run(make, [data])
    assert _run(make, [data[i : i + 1] for i in range(len(data))]) == whole


@pytest.mark.parametrize("case", list(STREAMS))
def test_every_two_chunk_split_equals_one_chunk(case: str) -> None:
    make, data = STREAMS[case]
    whole = _run(make, [data])
    for offset in range(1, len(data)):
        assert _run(make, [data[:offset], data[offset:]]) == whole, offset


def test_stream_results_are_what_they_should_be() -> None:
    # guards the split tests against comparing two equally wrong results
    make, data = STREAMS["accepting, healthy"]
    packets, answered, ready, peer, role, failure = _run(make, [data])
    assert packets == [REQUEST_1, REQUEST_2]
    assert answered == [Welcome(protocol=PROTOCOL_VERSION, node_id="server-1"), Pong(nonce=9)]
    assert (ready, peer, role, failure) == (True, "client-1", "host", None)
    make, data = STREAMS["accepting, oversized after packets"]
    packets, _, _, _, _, failure = _run(make, [data])
    assert packets == [REQUEST_1]
    assert failure is not None and failure[0] is FrameTooLarge
    make, data = STREAMS["connecting, refused"]
    packets, answered, ready, _, _, failure = _run(make, [data])
    assert (packets, answered, ready) == ([], [], False)
    assert failure == (ProtocolVersionMismatch, "no")


def test_large_frame_split_across_many_reads() -> None:
    big = Request(id=5, service="S", endpoint="e", params={"blob": "x" * 200_000})
    data = frame(big)
    session = ready_acceptor()
    got: list[Packet] = []
    for i in range(0, len(data), 4096):
        got += session.receive_data(data[i : i + 4096])
    assert got == [big]
    assert session.failure is None


# -- closing ----------------------------------------------------------------------------------


def test_send_works_until_closed() -> None:
    session = ready_acceptor()
    assert decode_all(bytes(session.send(RESPONSE_1))) == [RESPONSE_1]
    session.close()
    assert session.closed and not session.ready
    with pytest.raises(ConnectionLost):
        session.send(RESPONSE_1)
    with pytest.raises(ConnectionLost):
        session.ping()


def test_send_raises_after_fail() -> None:
    session = ready_acceptor()
    session.fail(ProtocolError("bye"))
    with pytest.raises(ConnectionLost):
        session.send(REQUEST_1)
    assert isinstance(ConnectionLost("x"), ConnectionError)


def test_fail_after_close_sends_nothing() -> None:
    session = ready_acceptor()
    session.close()
    assert session.fail(ProtocolError("late")) == b""
