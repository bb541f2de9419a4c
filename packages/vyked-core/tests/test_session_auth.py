"""The authenticated handshake (cluster secret), with plain bytes: hello(nonce), challenge(nonce,
proof), auth(proof), welcome. Both sides prove the secret; neither ever sends it; a recorded or
reflected proof does not open another session; nothing sent before the handshake completes
reaches the caller."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vyked.core.exceptions import AuthenticationFailed, ProtocolError, VykedError
from vyked.core.protocol import auth
from vyked.core.protocol.framing import FrameDecoder, encode_frame
from vyked.core.protocol.packets import (
    PROTOCOL_VERSION,
    Auth,
    Challenge,
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

SECRET = b"correct horse battery staple"
OTHER = b"incorrect donkey battery staple"
REQUEST = Request(id=1, service="Calc", endpoint="add", params={"a": 1, "b": 2})
RESPONSE = Response(id=1, result=3)

quick = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def frame(packet: Packet) -> bytes:
    return bytes(encode_frame(packet))


def decode_all(data: bytes) -> list[Packet]:
    decoder = FrameDecoder()
    packets = decoder.feed(data)
    assert decoder.error is None
    return packets


def server(secret: bytes | None = SECRET) -> Session:
    return Session(accepting=True, node_id="server-1", role="registry", secret=secret)


def client(secret: bytes | None = SECRET) -> Session:
    return Session(accepting=False, node_id="client-1", role="host", secret=secret)


class Wire:
    """Two sessions joined back to back; records every byte each side sends."""

    def __init__(self, connector: Session, acceptor: Session) -> None:
        self.connector, self.acceptor = connector, acceptor
        self.sent_by_connector = b""
        self.sent_by_acceptor = b""
        self.delivered_to_connector: list[Packet] = []
        self.delivered_to_acceptor: list[Packet] = []

    def run(self) -> Wire:
        """Start and pump bytes both ways until neither side has anything to say; a side that
        fails sends its ``error`` frame (as the connection adapter does) and the pumping stops."""
        to_acceptor = self.connector.start()
        to_connector = b""
        while to_acceptor or to_connector:
            if to_acceptor:
                self.sent_by_connector += to_acceptor
                self.delivered_to_acceptor += self.acceptor.receive_data(to_acceptor)
                to_acceptor = b""
                to_connector = self._answer(self.acceptor)
            if to_connector:
                self.sent_by_acceptor += to_connector
                self.delivered_to_connector += self.connector.receive_data(to_connector)
                to_connector = b""
                to_acceptor = self._answer(self.connector)
        return self

    @staticmethod
    def _answer(session: Session) -> bytes:
        data = session.data_to_send()
        if session.failure is not None and not session.closed:
            data += session.fail(session.failure)
        return data

    @property
    def wire(self) -> bytes:
        return self.sent_by_connector + self.sent_by_acceptor


def challenge_of(acceptor: Session, hello: bytes) -> Challenge:
    """Feed ``hello`` to ``acceptor`` and return the challenge it answers with."""
    assert acceptor.receive_data(hello) == []
    (packet,) = decode_all(acceptor.data_to_send())
    assert isinstance(packet, Challenge)
    return packet


def refusal(session: Session) -> Error:
    """The ``error`` frame a failed session sends before closing (as the adapter does)."""
    assert session.failure is not None
    (packet,) = decode_all(session.fail(session.failure))
    assert isinstance(packet, Error)
    return packet


# -- both sides know the secret --------------------------------------------------------------


def test_both_sides_with_the_same_secret_become_ready() -> None:
    wire = Wire(client(), server()).run()
    assert wire.connector.ready and wire.acceptor.ready
    assert wire.connector.failure is None and wire.acceptor.failure is None
    assert (wire.connector.peer_node_id, wire.acceptor.peer_node_id) == ("server-1", "client-1")
    assert [type(p) for p in decode_all(wire.sent_by_connector)] == [Hello, Auth]
    assert [type(p) for p in decode_all(wire.sent_by_acceptor)] == [Challenge, Welcome]
    assert wire.acceptor.receive_data(bytes(wire.connector.send(REQUEST))) == [REQUEST]
    assert wire.connector.receive_data(bytes(wire.acceptor.send(RESPONSE))) == [RESPONSE]


def test_the_handshake_packets_carry_fresh_nonces_and_proofs() -> None:
    wires = [Wire(client(), server()).run() for _ in range(50)]
    hellos = [decode_all(w.sent_by_connector)[0] for w in wires]
    challenges = [decode_all(w.sent_by_acceptor)[0] for w in wires]
    auths = [decode_all(w.sent_by_connector)[1] for w in wires]
    assert all(isinstance(h, Hello) and len(h.nonce) == 2 * auth.NONCE_BYTES for h in hellos)
    assert all(isinstance(c, Challenge) and len(c.nonce) == 2 * auth.NONCE_BYTES for c in challenges)
    assert all(isinstance(a, Auth) and len(a.proof) == 64 for a in auths)  # hex HMAC-SHA256
    assert len({h.nonce for h in hellos} | {c.nonce for c in challenges}) == 100  # type: ignore[attr-defined]
    assert len({a.proof for a in auths}) == 50  # type: ignore[attr-defined]


@quick
@given(secret=st.binary(min_size=1, max_size=64))
def test_any_shared_secret_completes_the_handshake(secret: bytes) -> None:
    wire = Wire(client(secret), server(secret)).run()
    assert wire.connector.ready and wire.acceptor.ready
    assert wire.delivered_to_connector == wire.delivered_to_acceptor == []


@quick
@given(secret=st.binary(min_size=12, max_size=64))
def test_the_secret_never_appears_in_any_byte_sent(secret: bytes) -> None:
    wire = Wire(client(secret), server(secret)).run()
    assert wire.connector.ready
    data = wire.wire
    for form in (secret, secret.hex().encode(), base64.b64encode(secret), base64.urlsafe_b64encode(secret)):
        assert form not in data


@pytest.mark.parametrize(
    "secret", [SECRET, b"\x00" * 32, "p\u00e4ssw\u00f6rd \u2603".encode(), bytes(range(256))], ids=repr
)
def test_the_secret_never_appears_even_when_the_handshake_fails(secret: bytes) -> None:
    for wire in (
        Wire(client(secret), server(secret)).run(),
        Wire(client(secret), server(secret + b"!")).run(),
        Wire(client(secret + b"!"), server(secret)).run(),
        Wire(client(secret), server(None)).run(),
        Wire(client(None), server(secret)).run(),
    ):
        data = wire.wire
        assert secret not in data
        assert secret.hex().encode() not in data
        assert base64.b64encode(secret) not in data


@quick
@given(cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8))
def test_any_split_of_the_handshake_bytes_completes_it(cuts: list[int]) -> None:
    acceptor, connector = server(), client()
    hello = connector.start()
    challenge = _feed_split(acceptor, hello, cuts)
    auth_frame = _feed_split(connector, challenge, cuts)
    welcome = _feed_split(acceptor, auth_frame + frame(REQUEST), cuts, expect=[REQUEST])
    _feed_split(connector, welcome, cuts)
    assert acceptor.ready and connector.ready
    assert acceptor.failure is None and connector.failure is None


def _feed_split(session: Session, data: bytes, cuts: list[int], expect: list[Packet] | None = None) -> bytes:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    delivered: list[Packet] = []
    for start, end in itertools.pairwise(points):
        delivered += session.receive_data(data[start:end])
    assert delivered == (expect or [])
    return session.data_to_send()


def test_ping_during_the_authenticated_handshake_is_answered_and_does_not_break_it() -> None:
    acceptor, connector = server(), client()
    acceptor.receive_data(frame(Ping(nonce=1)) + connector.start() + frame(Ping(nonce=2)))
    answered = decode_all(acceptor.data_to_send())
    assert [type(p) for p in answered] == [Pong, Challenge, Pong]
    connector.receive_data(frame(answered[1]))
    assert acceptor.receive_data(connector.data_to_send()) == []
    connector.receive_data(acceptor.data_to_send())
    assert acceptor.ready and connector.ready


def test_application_packets_right_after_auth_in_the_same_chunk_are_delivered() -> None:
    acceptor, connector = server(), client()
    connector.receive_data(frame(challenge_of(acceptor, connector.start())))
    assert acceptor.receive_data(connector.data_to_send() + frame(REQUEST)) == [REQUEST]
    assert acceptor.ready


# -- a wrong secret fails on either side -------------------------------------------------------


def test_wrong_secret_fails_on_the_connecting_side_first() -> None:
    wire = Wire(client(SECRET), server(OTHER)).run()
    assert isinstance(wire.connector.failure, AuthenticationFailed)
    assert not wire.connector.ready and not wire.acceptor.ready
    sent = decode_all(wire.sent_by_connector)
    assert [type(p) for p in sent] == [Hello, Error]  # no auth proof for a peer that failed its own
    assert sent[1] == Error(code="auth_failed", message=str(wire.connector.failure))
    # the acceptor learns why, and ends too
    assert isinstance(wire.acceptor.failure, AuthenticationFailed)
    assert wire.acceptor.refusal is not None and wire.acceptor.refusal.code == "auth_failed"


def test_wrong_secret_fails_on_the_accepting_side_with_an_auth_failed_error_frame() -> None:
    # a connector that does not check the server's proof and answers with a proof of its own secret
    acceptor = server(SECRET)
    client_nonce = auth.new_nonce()
    challenge = challenge_of(acceptor, frame(Hello(protocol=PROTOCOL_VERSION, node_id="rogue", nonce=client_nonce)))
    rogue_proof = auth.proof(OTHER, auth.CLIENT, client_nonce, challenge.nonce)
    assert acceptor.receive_data(frame(Auth(proof=rogue_proof)) + frame(REQUEST)) == []
    assert isinstance(acceptor.failure, AuthenticationFailed)
    assert acceptor.failure.code == "auth_failed"
    assert not acceptor.ready
    assert acceptor.data_to_send() == b""  # no welcome
    error = refusal(acceptor)
    assert (error.code, error.id) == ("auth_failed", None)
    assert acceptor.receive_data(frame(REQUEST)) == []  # closed: nothing more is parsed


@pytest.mark.parametrize("kind", ["another secret", "a guess", "empty"])
def test_a_server_that_does_not_know_the_secret_gives_a_bad_proof_and_the_client_refuses_it(kind: str) -> None:
    connector = client(SECRET)
    hello = decode_all(connector.start())[0]
    assert isinstance(hello, Hello) and hello.nonce
    server_nonce = auth.new_nonce()
    bad_proof = {
        "another secret": auth.proof(OTHER, auth.SERVER, hello.nonce, server_nonce),
        "a guess": "0" * 64,
        "empty": "",
    }[kind]
    assert connector.receive_data(frame(Challenge(nonce=server_nonce, proof=bad_proof)) + frame(RESPONSE)) == []
    assert isinstance(connector.failure, AuthenticationFailed)
    assert not connector.ready
    assert connector.data_to_send() == b""  # it does not answer with its own proof
    error = refusal(connector)
    assert (error.code, error.id) == ("auth_failed", None)


def test_the_client_sends_auth_failed_to_a_rogue_server_over_the_wire() -> None:
    wire = Wire(client(SECRET), server(OTHER)).run()
    last = decode_all(wire.sent_by_connector)[-1]
    assert isinstance(last, Error) and last.code == "auth_failed"


# -- a secret on one side only -----------------------------------------------------------------


def test_secret_only_on_the_server_refuses_the_client_with_auth_failed() -> None:
    wire = Wire(client(None), server(SECRET)).run()
    assert isinstance(wire.acceptor.failure, AuthenticationFailed)
    assert [type(p) for p in decode_all(wire.sent_by_acceptor)] == [Error]  # no challenge to a stranger
    assert isinstance(wire.connector.failure, AuthenticationFailed)
    assert wire.connector.refusal is not None
    assert (wire.connector.refusal.code, wire.connector.refusal.id) == ("auth_failed", None)
    assert not wire.connector.ready and not wire.acceptor.ready


def test_a_client_without_a_secret_that_is_challenged_fails_clearly() -> None:
    connector = client(None)
    connector.start()
    assert connector.receive_data(frame(Challenge(nonce=auth.new_nonce(), proof="ab" * 32))) == []
    assert isinstance(connector.failure, AuthenticationFailed)
    assert "none is configured" in str(connector.failure)
    assert connector.data_to_send() == b""


def test_secret_only_on_the_client_fails_the_client_because_no_challenge_came() -> None:
    wire = Wire(client(SECRET), server(None)).run()
    assert isinstance(wire.connector.failure, AuthenticationFailed)
    assert "no challenge" in str(wire.connector.failure)
    assert not wire.connector.ready
    sent = decode_all(wire.sent_by_connector)
    assert [type(p) for p in sent] == [Hello, Error] and sent[1].code == "auth_failed"  # type: ignore[attr-defined]
    # the plaintext server had welcomed it; the refusal ends its side too
    assert isinstance(wire.acceptor.failure, AuthenticationFailed)


# -- recorded and reflected proofs -------------------------------------------------------------


def test_a_recorded_auth_reply_replayed_on_a_new_session_is_refused() -> None:
    recorded = Wire(client(), server()).run()
    hello_frame, auth_frame = (frame(p) for p in decode_all(recorded.sent_by_connector))
    assert recorded.acceptor.ready
    for _ in range(20):
        victim = server()
        challenge_of(victim, hello_frame)  # the same hello, so the same client nonce: only the server's is new
        assert victim.receive_data(auth_frame + frame(REQUEST)) == []
        assert isinstance(victim.failure, AuthenticationFailed)
        assert not victim.ready
        assert refusal(victim).code == "auth_failed"


def test_a_recorded_challenge_replayed_to_a_new_client_is_refused() -> None:
    recorded = Wire(client(), server()).run()
    challenge_frame = frame(decode_all(recorded.sent_by_acceptor)[0])
    victim = client()
    victim.start()  # a new client nonce
    assert victim.receive_data(challenge_frame) == []
    assert isinstance(victim.failure, AuthenticationFailed)
    assert victim.data_to_send() == b""


def test_a_reflected_proof_is_refused() -> None:
    # the rogue sends the server's own proof back as the client's
    acceptor = server()
    challenge = challenge_of(acceptor, frame(Hello(protocol=PROTOCOL_VERSION, nonce=auth.new_nonce())))
    assert acceptor.receive_data(frame(Auth(proof=challenge.proof)) + frame(REQUEST)) == []
    assert isinstance(acceptor.failure, AuthenticationFailed)
    assert refusal(acceptor).code == "auth_failed"


@pytest.mark.parametrize("which", ["its own challenge proof", "the proof of a session opened with its nonce"])
def test_a_proof_obtained_from_the_server_in_a_parallel_session_is_refused(which: str) -> None:
    # the rogue holds session 1 open and asks a second session to sign with session 1's server
    # nonce as the "client" nonce: still a server-labelled proof over other nonces
    rogue_nonce = auth.new_nonce()
    first = server()
    first_challenge = challenge_of(first, frame(Hello(protocol=PROTOCOL_VERSION, nonce=rogue_nonce)))
    second = server()
    second_challenge = challenge_of(second, frame(Hello(protocol=PROTOCOL_VERSION, nonce=first_challenge.nonce)))
    proof = first_challenge.proof if which.startswith("its own") else second_challenge.proof
    assert first.receive_data(frame(Auth(proof=proof)) + frame(REQUEST)) == []
    assert isinstance(first.failure, AuthenticationFailed)
    assert not first.ready


def test_a_second_challenge_is_a_protocol_error() -> None:
    acceptor, connector = server(), client()
    challenge = frame(challenge_of(acceptor, connector.start()))
    connector.receive_data(challenge)
    connector.data_to_send()
    assert connector.receive_data(challenge) == []
    assert isinstance(connector.failure, ProtocolError)
    assert not connector.ready


def test_welcome_without_challenge_from_a_server_pretending_to_know_the_secret_is_refused() -> None:
    connector = client()
    connector.start()
    assert connector.receive_data(frame(Welcome(protocol=PROTOCOL_VERSION, node_id="rogue")) + frame(RESPONSE)) == []
    assert isinstance(connector.failure, AuthenticationFailed)
    assert not connector.ready


@quick
@given(proof=st.text(alphabet=st.characters(codec="ascii"), max_size=80))
def test_no_guessed_ascii_proof_is_accepted(proof: str) -> None:
    acceptor = server()
    challenge_of(acceptor, frame(Hello(protocol=PROTOCOL_VERSION, nonce=auth.new_nonce())))
    assert acceptor.receive_data(frame(Auth(proof=proof)) + frame(REQUEST)) == []
    assert isinstance(acceptor.failure, AuthenticationFailed)
    assert not acceptor.ready


@quick
@given(proof=st.text(alphabet=st.characters(codec="ascii"), max_size=80), nonce=st.text(max_size=40))
def test_no_guessed_ascii_challenge_proof_is_accepted(proof: str, nonce: str) -> None:
    connector = client()
    connector.start()
    assert connector.receive_data(frame(Challenge(nonce=nonce, proof=proof)) + frame(RESPONSE)) == []
    assert isinstance(connector.failure, AuthenticationFailed)
    assert connector.data_to_send() == b""


# A peer controls these strings. hmac.compare_digest raises TypeError for str arguments with
# non-ASCII characters, so such a proof must be refused as any wrong proof is, not crash the session.
NON_ASCII_PROOFS = ["\u00e9" * 64, "\u2603", "a" * 63 + "\u00ff"]


@pytest.mark.parametrize("proof", NON_ASCII_PROOFS, ids=["e-acute", "snowman", "last-char"])
def test_a_non_ascii_auth_proof_is_refused_not_raised(proof: str) -> None:
    acceptor = server()
    challenge_of(acceptor, frame(Hello(protocol=PROTOCOL_VERSION, nonce=auth.new_nonce())))
    assert acceptor.receive_data(frame(Auth(proof=proof))) == []
    assert isinstance(acceptor.failure, AuthenticationFailed)
    assert refusal(acceptor).code == "auth_failed"


@pytest.mark.parametrize("proof", NON_ASCII_PROOFS, ids=["e-acute", "snowman", "last-char"])
def test_a_non_ascii_challenge_proof_is_refused_not_raised(proof: str) -> None:
    connector = client()
    connector.start()
    assert connector.receive_data(frame(Challenge(nonce=auth.new_nonce(), proof=proof))) == []
    assert isinstance(connector.failure, AuthenticationFailed)
    assert refusal(connector).code == "auth_failed"


# -- nothing sent before the handshake completes is returned ----------------------------------

EARLY_PACKETS = st.lists(
    st.one_of(
        st.builds(
            Request,
            id=st.integers(min_value=0, max_value=2**31),
            service=st.text(max_size=10),
            endpoint=st.text(max_size=10),
            params=st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
        ),
        st.builds(Response, id=st.integers(min_value=0, max_value=2**31), result=st.integers()),
        st.builds(
            Error, code=st.sampled_from(["remote_error", "timeout"]), message=st.text(max_size=10), id=st.integers(0, 9)
        ),
    ),
    min_size=1,
    max_size=5,
)


def _rogue_hello() -> tuple[str, bytes]:
    nonce = auth.new_nonce()
    return nonce, frame(Hello(protocol=PROTOCOL_VERSION, node_id="rogue", nonce=nonce))


@quick
@given(early=EARLY_PACKETS, stage=st.sampled_from(["before hello", "after hello", "after a wrong auth"]))
def test_packets_before_the_acceptor_is_ready_are_never_returned(early: list[Packet], stage: str) -> None:
    acceptor = server()
    payload = b"".join(frame(p) for p in early)
    delivered: list[Packet] = []
    if stage == "before hello":
        delivered += acceptor.receive_data(payload + _rogue_hello()[1])
    elif stage == "after hello":
        delivered += acceptor.receive_data(_rogue_hello()[1] + payload + frame(Auth(proof="0" * 64)))
    else:
        nonce, hello = _rogue_hello()
        challenge = challenge_of(acceptor, hello)
        wrong = auth.proof(OTHER, auth.CLIENT, nonce, challenge.nonce)
        delivered += acceptor.receive_data(frame(Auth(proof=wrong)) + payload)
    assert delivered == []
    assert not acceptor.ready
    assert isinstance(acceptor.failure, VykedError)  # auth_failed, bad_frame, or an early error packet
    acceptor.fail(acceptor.failure)
    assert acceptor.receive_data(payload) == []


@quick
@given(early=EARLY_PACKETS)
def test_packets_a_legitimate_client_pipelines_before_auth_are_never_returned(early: list[Packet]) -> None:
    # a client that sends requests right after hello, before it has proved anything
    acceptor, connector = server(), client()
    payload = b"".join(frame(p) for p in early)
    assert acceptor.receive_data(connector.start() + payload) == []
    assert isinstance(acceptor.failure, VykedError)  # bad_frame (expected auth), or its early error packet
    assert not acceptor.ready


@quick
@given(early=EARLY_PACKETS, stage=st.sampled_from(["before challenge", "with a bad challenge", "after challenge"]))
def test_packets_before_the_connector_is_ready_are_never_returned(early: list[Packet], stage: str) -> None:
    connector = client()
    hello = decode_all(connector.start())[0]
    assert isinstance(hello, Hello)
    payload = b"".join(frame(p) for p in early)
    server_nonce = auth.new_nonce()
    if stage == "before challenge":
        data = payload
    elif stage == "with a bad challenge":
        data = frame(Challenge(nonce=server_nonce, proof="f" * 64)) + payload
    else:  # a genuine challenge, then packets where the welcome should be
        good = auth.proof(SECRET, auth.SERVER, hello.nonce, server_nonce)
        data = frame(Challenge(nonce=server_nonce, proof=good)) + payload
    assert connector.receive_data(data) == []
    assert not connector.ready
    assert isinstance(connector.failure, VykedError)


@pytest.mark.parametrize(
    ("make_connector", "make_acceptor"),
    [(lambda: client(SECRET), lambda: server(OTHER)), (lambda: client(None), lambda: server(SECRET))],
    ids=["wrong secret", "no secret"],
)
def test_a_refused_connector_returns_nothing_it_received_afterwards(
    make_connector: Callable[[], Session], make_acceptor: Callable[[], Session]
) -> None:
    wire = Wire(make_connector(), make_acceptor()).run()
    assert wire.delivered_to_connector == wire.delivered_to_acceptor == []
    for session in (wire.connector, wire.acceptor):
        assert isinstance(session.failure, VykedError)
        assert session.receive_data(frame(RESPONSE) + frame(REQUEST)) == []
